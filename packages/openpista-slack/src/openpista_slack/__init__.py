"""openpista-slack: the Slack channel (see docs/channels/slack.md)."""
