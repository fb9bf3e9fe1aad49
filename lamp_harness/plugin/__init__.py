"""What plugins are written against, and how they are found.

What lives here: ``contracts`` (the four plugin contracts and the frozen data types between them),
``options`` (component options, declared once and checked before any work), ``trainable`` (the
trainable-generator mixin), ``catalog`` (``Registry`` and ``Component``), ``hookspecs`` (the hooks),
``registry`` (the plugin host: entry-point discovery, hook calls) and ``scaffold`` (``lamp plugins
new``).

What it may import: ``contracts``, ``options``, ``trainable`` and ``catalog`` (floor 1) only
``lamp_harness.base``; ``hookspecs`` and ``registry`` (floor 3) also the typed hook payloads of
``lamp_harness.run`` (``cells``, ``records``: floor 2); ``scaffold`` (floor 9) anything below the
CLI. A plugin imports none of these modules directly: it imports the public names from
``lamp_harness``. This package imports nothing itself (no re-exports). The floors are in
docs/architecture.md.
"""
