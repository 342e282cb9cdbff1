"""Settings, logging and the error root: the layer every other package stands on."""
