# The compiled bulk lookup (examkit/_lookup.c); used through examkit.fastlookup.
def tsv(
    data: bytes,
    tables: tuple[object, object, object],
    spans: object,
    blob: object,
    hide: bool,
    /,
) -> tuple[bytes | None, int, int, int]: ...
