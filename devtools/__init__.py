"""Local development and test plumbing (the emulator, the dev server). Not shipped."""
