"""Personal data: the offline presidio engine and everything the MLA4xx rules share.

``engine`` (presidio on a blank spaCy pipeline, no download), ``recognizers`` and ``names``
(the offline e-mail check and the Census name lists), ``entities`` and ``hints`` (what is
looked for, and what column names say), ``analysis`` and ``scan`` (pre-checks, batching,
processes, aggregation), ``columns`` (which columns of a table are read, and how), ``tables``
(MLA401's work units, column chunks a Dask cluster shares), ``pickle_strings``,
``onnx_strings`` and ``strings`` (model files read statically), ``redact`` (the only way a
value leaves).
Only ``engine`` and ``recognizers`` import presidio, and only when an engine is built.
"""
