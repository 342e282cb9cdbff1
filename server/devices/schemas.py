"""Payloads of the CA and of devices."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StringConstraints, WithJsonSchema

from crypto.devices import KEY_BYTES, SIGNATURE_BYTES, decode_b64url
from server.text import SingleLine


def _key(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("must be a base64url string")
    return decode_b64url(value, KEY_BYTES)


def _signature(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("must be a base64url string")
    return decode_b64url(value, SIGNATURE_BYTES)


def _b64url_schema(length: int) -> WithJsonSchema:
    chars = (length * 8 + 5) // 6
    return WithJsonSchema(
        {
            "type": "string",
            "contentEncoding": "base64url",
            "minLength": chars,
            "maxLength": chars,
            "description": f"{length} bytes, unpadded base64url",
        }
    )


# Arrive as unpadded base64url text, reach the service as raw bytes.
RawPublicKey = Annotated[bytes, PlainValidator(_key), _b64url_schema(KEY_BYTES)]
RawSignature = Annotated[bytes, PlainValidator(_signature), _b64url_schema(SIGNATURE_BYTES)]
DeviceName = Annotated[str, StringConstraints(max_length=128), SingleLine]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaOut(BaseModel):
    """The CA's public key, for checking device certificates (crypto.ca.verify_certificate)."""

    alg: Literal["Ed25519"]
    public_key: str = Field(description="Raw 32-byte Ed25519 public key, unpadded base64url")
    kid: str = Field(description="RFC 7638 JWK thumbprint of the key")
    payload_format: str = Field(description='Layout of the signed bytes: "parley-ca-v1"')


class RegisterDeviceRequest(_Strict):
    """Body of ``POST /v1/devices``: public keys made on the device, and the proof."""

    name: DeviceName = Field(default="", description="Shown in the user's device list")
    signing_key: RawPublicKey = Field(description="Ed25519 public key")
    agreement_key: RawPublicKey = Field(description="X25519 public key")
    proof: RawSignature = Field(
        description="Ed25519 signature by signing_key of device_proof_payload (crypto/devices.py)"
    )


class CertificateOut(BaseModel):
    """``crypto.ca.DeviceCertificate.to_dict()``; parse with ``DeviceCertificate.from_dict``."""

    v: int
    alg: Literal["Ed25519"]
    code: str = Field(description="The owner's stable public handle")
    reg_timestamp: int = Field(description="Unix seconds")
    device_public_key: str
    reg_sign: str = Field(description="The CA's Ed25519 signature, unpadded base64url")


class DeviceOut(BaseModel):
    id: str
    name: str
    signing_key: str
    agreement_key: str
    proof: str = Field(description="The device's signature binding both keys to the user")
    created_at: datetime
    certificate: CertificateOut


class DeviceList(BaseModel):
    devices: list[DeviceOut] = Field(description="Active (not revoked) devices, oldest first")


class DirectoryDevice(DeviceOut):
    revoked: bool = Field(description="Revoked devices are listed only on request")


class UserKeys(BaseModel):
    user_id: str
    code: str
    devices: list[DirectoryDevice]


class UserKeysList(BaseModel):
    users: list[UserKeys] = Field(description="Users that exist, by id; unknown ids are left out")
