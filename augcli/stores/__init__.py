"""Where images come from and go to: one ``Store`` interface (``stores.base``), a folder
(``stores.folder``) and an object-store prefix (``stores.objects``) behind it.

Importing the package registers both kinds, so ``StoreSpec.open`` can open either.
"""

from .base import (
    LOCK_NAME,
    MANIFEST_NAME,
    SCHEMES,
    StorageError,
    Store,
    StoreSpec,
    require_extra,
)
from .folder import FolderStore
from .locations import check_folders, check_input_folder, open_pair, open_store
from .objects import ObjectStore

__all__ = ["LOCK_NAME", "MANIFEST_NAME", "SCHEMES", "FolderStore", "ObjectStore",
           "StorageError", "Store", "StoreSpec", "check_folders", "check_input_folder",
           "open_pair", "open_store", "require_extra"]
