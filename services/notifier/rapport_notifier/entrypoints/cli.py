import sys

from rapport_tools.service_cli import service_main

from .. import bootstrap, settings


def main(argv: list[str] | None = None) -> int:
    return service_main("notifier", settings.load, bootstrap.build, argv)


if __name__ == "__main__":
    sys.exit(main())
