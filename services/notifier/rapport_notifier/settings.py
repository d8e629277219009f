from rapport_shared.settings import ServiceSettings


class NotifierSettings(ServiceSettings):
    service_name: str = "notifier"
    http_port: int = 8084


def load() -> NotifierSettings:
    return NotifierSettings()
