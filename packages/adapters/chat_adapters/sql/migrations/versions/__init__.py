"""Migration scripts, applied in order by ``chat_adapters.sql.migrate``."""
