"""File input and output: series files, DICOM, exports; all writes atomic."""
