"""Avro on the wire: the record codec, the columnar batch decoder and encoder, and their compiled kernels."""
