"""Object metadata shared by the builders."""

from __future__ import annotations

from typing import Any


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """A controller reference to `owner` (a manifest with apiVersion, kind, name, uid).

    blockOwnerDeletion makes foreground deletion of the owner wait for this child.
    """
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    """`obj` names `uid` as its controller."""
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)
