"""Reading run directories and turning them into paper-style figures and tables."""
