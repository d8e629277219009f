from pydantic import Field, SecretStr, model_validator

from rapport_shared.private_contacts import DEV_KEY_ID, DEV_KEYS_JSON, Keyring
from rapport_shared.settings import ServiceSettings

from .domain.rules import IntakeRules, load_rules


class IntakeSettings(ServiceSettings):
    service_name: str = "intake"
    http_port: int = 8081

    # Availability must hold a weekly session this long (the scheduler books the same length).
    session_minutes: int = Field(default=50, gt=0)
    # domain.md 1: "a secondary is optional; configurable".
    allow_secondary_focus: bool = True
    # Templates, age rules, exclusions, required baseline instruments, decline reasons (JSON);
    # empty = the defaults in rapport_intake/domain/rules.json.
    intake_rules_path: str = ""

    # The private contacts topic (rapport_shared.private_contacts): AES-256 keys by key id, and
    # the one new values are encrypted with. The notifier needs the same keys.
    contacts_keys: SecretStr = SecretStr(DEV_KEYS_JSON)
    contacts_active_key: str = DEV_KEY_ID

    def rules(self) -> IntakeRules:
        """The clinical rules this service runs with (loaded once per path)."""
        return load_rules(self.intake_rules_path or None)

    def owner_of_unowned(self) -> str | None:
        """The organisation rows written before referrals recorded theirs count as (None: no one's)."""
        return self.default_organisation or None

    def keyring(self) -> Keyring:
        return Keyring.from_config(self.contacts_keys.get_secret_value(), self.contacts_active_key)

    @model_validator(mode="after")
    def _keys(self) -> "IntakeSettings":
        ring = self.keyring()  # refuses malformed keys at start, not at the first publish
        if self.environment == "production" and ring.is_development():
            raise ValueError("RAPPORT_CONTACTS_KEYS must be set in production (the development key is public)")
        return self


def load() -> IntakeSettings:
    return IntakeSettings()
