"""Pure request decoding and response encoding for the inference protocols ModelDeck speaks."""
