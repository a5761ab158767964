"""python -m utils.drivers.device_name: the device name this run's rows will carry (make session
files its figures under it: one folder per machine)."""

import sys

from utils import checks, settings
from utils.measure import config, env


@checks.command("session")
def main():
    print(env.capture(config.load("session", settings.read(), check_results=False).device)["device"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
