"""Learn stage: record attempts and missions, choose strategies, audit, insights."""
