#!/usr/bin/python3
"""A real container image for the tests and the quickstart: one layer holding Debian's busybox-static
(/bin/busybox and its applets as links), with an optional web page at /www/index.html, as an OCI image
pushed with skopeo to a registry over plain HTTP.

    busybox-image.py [--page TEXT] REGISTRY/REPOSITORY:TAG
"""
import argparse, hashlib, io, json, os, subprocess, sys, tarfile, tempfile

BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "httpd", "echo", "cat", "sleep", "ls", "wget", "true", "false"]


def layer(page):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def entry(name, kind, mode, data=b"", link=""):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.size, info.linkname, info.mtime = kind, mode, len(data), link, 0
            t.addfile(info, io.BytesIO(data) if data else None)
        for d in ("bin", "tmp", "www"):
            entry(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755)
        with open(BUSYBOX, "rb") as f:
            entry("bin/busybox", tarfile.REGTYPE, 0o755, f.read())
        for applet in APPLETS:
            entry("bin/" + applet, tarfile.SYMTYPE, 0o777, link="busybox")
        if page is not None:
            entry("www/index.html", tarfile.REGTYPE, 0o644, page.encode())
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--page", help="the text of /www/index.html")
    ap.add_argument("reference")
    a = ap.parse_args()
    if not os.path.exists(BUSYBOX):
        sys.exit("busybox-image: %s not found: install Debian's busybox-static" % BUSYBOX)
    with tempfile.TemporaryDirectory() as out:
        os.makedirs(out + "/blobs/sha256")

        def blob(data):
            digest = hashlib.sha256(data).hexdigest()
            with open(out + "/blobs/sha256/" + digest, "wb") as f:
                f.write(data)
            return {"digest": "sha256:" + digest, "size": len(data)}

        tar = layer(a.page)
        config = blob(json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
        }, sort_keys=True).encode())
        manifest = blob(json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": dict(config, mediaType="application/vnd.oci.image.config.v1+json"),
            "layers": [dict(blob(tar), mediaType="application/vnd.oci.image.layer.v1.tar")],
        }, sort_keys=True).encode())
        with open(out + "/index.json", "w") as f:
            json.dump({"schemaVersion": 2, "manifests": [dict(manifest, mediaType="application/vnd.oci.image.manifest.v1+json",
                                                               annotations={"org.opencontainers.image.ref.name": "image"})]}, f)
        with open(out + "/oci-layout", "w") as f:
            f.write('{"imageLayoutVersion": "1.0.0"}')
        p = subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:%s:image" % out,
                            "docker://" + a.reference], capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit("busybox-image: skopeo copy to %s failed: %s" % (a.reference, p.stderr.strip()))


main()
