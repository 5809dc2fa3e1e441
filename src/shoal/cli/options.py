"""Names shared by the root command and every command (kept free of heavy imports)."""

FILE_KEY = "shoal.file"
FILE_HELP = "Manifest (default: ./shoal.yaml, then ./shoal.yml); a folder means its manifest."

__all__ = ["FILE_HELP", "FILE_KEY"]
