"""pgsync-dossier: keep dossier (watch) lists in sync across sites with logical replication."""

__version__ = "0.1.0"
