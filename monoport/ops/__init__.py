"""Operations: what an operator reads and runs beside the serving path.

The runtime state in one object (:mod:`.stats`) and its read-only views
(:mod:`.statspage`, :mod:`.metrics`, served under ``--admin-prefix`` by
:mod:`.admin`), the access log (:mod:`.accesslog`), ``--check``
(:mod:`.check`), the README's generated flag table (:mod:`.docs`,
``python -m monoport.ops.docs --write README.md``) and the development
certificates (:mod:`.devcerts`). The connection path records into these;
nothing here is on the way of a client's bytes.
"""
