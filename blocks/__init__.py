"""Built-in vadblocks plugins, registered through the ``vadblocks`` entry-point group."""
