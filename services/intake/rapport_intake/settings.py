from rapport_shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    service_name: str = "intake"
    http_port: int = 8081


def load() -> IntakeSettings:
    return IntakeSettings()
