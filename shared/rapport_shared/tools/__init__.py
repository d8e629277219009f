"""Developer and operator tools for Rapport's event streams: the ``rapport`` command line
(``python -m rapport_shared.tools``; console script ``rapport``) and the operations behind it
(``kafka_ops``)."""
