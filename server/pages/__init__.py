"""Server-rendered pages for people (Simplified Chinese by default, English with ?lang=en)."""
