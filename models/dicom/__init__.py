"""DICOM in and out: image series import, CT/MR series writer, RTSTRUCT read/write.

* :mod:`models.dicom.common` — UIDs, identity, the modules every IOD shares (used by all
  writers, including RTDOSE/RTPLAN).
* :mod:`models.dicom.series` — scan a folder tree, group and validate image series, build
  a :class:`models.patient.volume.Volume`.
* :mod:`models.dicom.image_writer` — one file per slice CT/MR series.
* :mod:`models.dicom.rtstruct` — structure sets <-> labelmaps and fiducials.
* :mod:`models.dicom.writer` / :mod:`models.dicom.reader` — a whole
  :class:`models.patient.case.Case` to / from a folder.
"""
