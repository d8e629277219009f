import pytest

from rapport_testing.notifier import SmtpServer


@pytest.fixture
def smtp():
    """A real SMTP server on loopback: what the live notifier sends, and what a replay must not."""
    s = SmtpServer().start()
    yield s
    s.stop()
