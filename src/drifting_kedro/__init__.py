"""drifting-kedro: one-step Drifting vision-language-action policies as a Kedro project."""

__version__ = "0.1.0"
