"""IO-SEA style sessions (WDF, ephemeral services, data movers). App label: ``iosea``."""
