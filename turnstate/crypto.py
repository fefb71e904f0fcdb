"""Field-level encryption, under the names it has always been imported by.

The parts live in :mod:`turnstate.envelope` (the stored form of one field), :mod:`turnstate.encrypted_paths`
(which fields are encrypted) and :mod:`turnstate.field_encryption` (the codec the turn engine uses).
"""

from turnstate.codec import Sealed
from turnstate.encrypted_paths import EncryptedPaths
from turnstate.envelope import ENVELOPE_MARKER, ENVELOPE_VERSION, NONCE_SIZE, TAG_SIZE, is_envelope
from turnstate.field_encryption import REDACTED, FieldEncryption, check_decrypted_cache

__all__ = [
    "ENVELOPE_MARKER",
    "ENVELOPE_VERSION",
    "NONCE_SIZE",
    "REDACTED",
    "TAG_SIZE",
    "EncryptedPaths",
    "FieldEncryption",
    "Sealed",
    "check_decrypted_cache",
    "is_envelope",
]
