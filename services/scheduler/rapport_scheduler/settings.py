from rapport_shared.settings import ServiceSettings


class SchedulerSettings(ServiceSettings):
    service_name: str = "scheduler"
    http_port: int = 8082
    session_minutes: int = 50
    # Earliest first session after intake completes (clinics need a few days to book).
    first_session_lead_days: int = 2


def load() -> SchedulerSettings:
    return SchedulerSettings()
