CREATE DATABASE mendflow;  -- the shared duration history (MENDFLOW_HISTORY_URL)
