"""Running a measurement: the isolated child, its failures and progress, the machine it ran on, the cap."""
