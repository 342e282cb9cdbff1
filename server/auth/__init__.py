"""Sign-up, sign-in and sessions."""
