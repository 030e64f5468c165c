"""leadflow: behavioural lead scoring and autonomous follow-up for GoHighLevel real-estate teams."""

__version__ = "0.1.0"
