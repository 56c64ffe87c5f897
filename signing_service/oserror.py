"""Operating-system errors told in Vietnamese (for people: the CLI, start-up refusals)."""

from __future__ import annotations

import errno
import socket

_REASONS = {
    errno.ENOENT: "không có tệp hoặc thư mục này",
    errno.EACCES: "không có quyền truy cập",
    errno.EPERM: "không được phép",
    errno.EISDIR: "đây là một thư mục, không phải tệp",
    errno.ENOTDIR: "một phần của đường dẫn không phải thư mục",
    errno.ENOSPC: "hết chỗ trống trên đĩa",
    errno.EROFS: "hệ thống tệp chỉ cho phép đọc",
    errno.EEXIST: "tệp đã tồn tại",
    errno.ENAMETOOLONG: "tên tệp quá dài",
    errno.EADDRINUSE: "cổng đang được một chương trình khác dùng",
    errno.EADDRNOTAVAIL: "địa chỉ này không có trên máy",
}


def reason_vi(e: OSError) -> str:
    """Why ``e`` happened, in Vietnamese; the C library's own text when no translation is
    known."""
    if isinstance(e, socket.gaierror):
        # getaddrinfo's errors share numbers with errno's: not looked up in _REASONS.
        return "không phân giải được tên máy"
    return _REASONS.get(e.errno or 0) or e.strerror or str(e)
