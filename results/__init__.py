"""Run records: one JSON object per line in results/<suite>.jsonl, appended, never rewritten."""
