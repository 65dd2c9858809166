"""mailwatch: makes sure no customer email to a support mailbox goes unanswered."""

__version__ = "0.1.0"
