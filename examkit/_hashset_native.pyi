# Compiled hash-set helpers (examkit/_hashset_native.c); used through examkit.native.
def tsv(
    data: bytes,
    tables: tuple[object, object, object],
    spans: object,
    blob: object,
    hide: bool,
    /,
) -> tuple[bytes | None, int, int, int]: ...
def compact(blob: object, spans: object, /) -> tuple[bytes, bytes]: ...
