"""Code that runs without vadblocks: numpy plus one model runtime (LiteRT or ONNX Runtime).

Everything here imports neither torch nor any other part of vadblocks (only, where vadblocks is
installed, its error type), so ``vadblocks eim`` can pack these modules with a model into one
executable file, and ``predict``/``test``/``serve`` answer without loading torch.
"""
