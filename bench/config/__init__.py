"""Input: the registry's YAML and Hugging Face config files, validated into specs. No torch here."""
