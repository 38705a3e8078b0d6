"""Model files that ship inside the package (no download at run time), with their licences."""
