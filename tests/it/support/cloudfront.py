"""CloudFront's side of a signed URL, for spillway's tests (botocore and cryptography from PyPI).

    cloudfront.py keygen rsa|ecdsa KEY_PEM PUBLIC_PEM
        writes a new private key (PKCS#8 PEM) and its public key
    cloudfront.py botocore KEY_PEM KEY_PAIR_ID < cases.json
        signs each case {"resource", "expires", "policy": "canned"|"custom", "not_before",
        "ip_range"} with botocore's CloudFrontSigner; prints the URLs, one per line
    cloudfront.py check PUBLIC_PEM < requests.json
        decides each {"url", "requested", "now", "client_ip"} as CloudFront would: the
        signature over the policy, the resource, the dates and the address; prints
        "accept" or "reject: why", one per line
"""

import base64
import datetime
import ipaddress
import json
import re
import sys
from urllib.parse import parse_qsl, urlsplit, urlunsplit, urlencode

from botocore.signers import CloudFrontSigner
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa


def keygen(kind, key_path, public_path):
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(public_path, "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


def at(seconds):
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)


def sign_with_botocore(key_path, key_pair_id):
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)

    def rsa_signer(message):
        return key.sign(message, padding.PKCS1v15(), hashes.SHA1())

    signer = CloudFrontSigner(key_pair_id, rsa_signer)
    for case in json.load(sys.stdin):
        if case["policy"] == "canned":
            url = signer.generate_presigned_url(case["resource"],
                                                date_less_than=at(case["expires"]))
        else:
            after = at(case["not_before"]) if case.get("not_before") else None
            policy = signer.build_policy(case["resource"], at(case["expires"]),
                                         date_greater_than=after,
                                         ip_address=case.get("ip_range"))
            url = signer.generate_presigned_url(case["resource"], policy=policy)
        print(url)


def unsubstitute(value):
    return base64.b64decode(value.replace("-", "+").replace("_", "=").replace("~", "/"))


def check(public_path):
    with open(public_path, "rb") as f:
        public = serialization.load_pem_public_key(f.read())
    for request in json.load(sys.stdin):
        print(decide(public, request))


def decide(public, request):
    signed = urlsplit(request["url"])
    params = parse_qsl(signed.query, keep_blank_values=True)
    signing = {k: v for k, v in params if k in ("Expires", "Policy", "Signature", "Key-Pair-Id")}
    # CloudFront signs the URL as the viewer asks for it, without its own parameters; the
    # parameters stay byte for byte as written.
    rest = "&".join(part for part in signed.query.split("&")
                    if part.split("=")[0] not in signing)
    resource = urlunsplit((signed.scheme, signed.netloc, signed.path, rest, ""))
    if "Signature" not in signing or "Key-Pair-Id" not in signing:
        return "reject: unsigned"
    if "Policy" in signing:
        policy_bytes = unsubstitute(signing["Policy"])
    elif "Expires" in signing:
        policy_bytes = ('{"Statement":[{"Resource":%s,"Condition":{"DateLessThan":'
                        '{"AWS:EpochTime":%s}}}]}' % (json.dumps(resource),
                                                      signing["Expires"])).encode()
    else:
        return "reject: no policy"
    try:
        signature = unsubstitute(signing["Signature"])
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, policy_bytes, padding.PKCS1v15(), hashes.SHA1())
        else:
            public.verify(signature, policy_bytes, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return "reject: bad signature"
    statement = json.loads(policy_bytes)["Statement"][0]
    asked = urlsplit(request["requested"])
    asked_resource = urlunsplit((asked.scheme, asked.netloc, asked.path, rest, ""))
    # `*` in a policy's resource matches any characters, `?` one (CloudFront's wildcards).
    pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                      for c in statement["Resource"])
    if not re.fullmatch(pattern, asked_resource):
        return "reject: the policy is for another resource"
    condition = statement["Condition"]
    now = request["now"]
    if now >= condition["DateLessThan"]["AWS:EpochTime"]:
        return "reject: expired"
    after = condition.get("DateGreaterThan")
    if after and now < after["AWS:EpochTime"]:
        return "reject: not yet valid"
    source = condition.get("IpAddress")
    if source and ipaddress.ip_address(request["client_ip"]) not in \
            ipaddress.ip_network(source["AWS:SourceIp"]):
        return "reject: another address"
    return "accept"


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "keygen":
        keygen(sys.argv[2], sys.argv[3], sys.argv[4])
    elif command == "botocore":
        sign_with_botocore(sys.argv[2], sys.argv[3])
    elif command == "check":
        check(sys.argv[2])
    else:
        sys.exit("unknown command " + command)
