from rapport_shared.settings import ServiceSettings


class OutcomesSettings(ServiceSettings):
    service_name: str = "outcomes"
    http_port: int = 8083


def load() -> OutcomesSettings:
    return OutcomesSettings()
