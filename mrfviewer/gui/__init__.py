"""The desktop application (PySide6 + pyqtgraph): widgets only; all computation is in the core."""
