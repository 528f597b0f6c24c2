"""Vietnamese name parts with approximate frequencies, for the synthetic register.

Family-name shares follow published surveys (Nguyễn about 38 %, Trần 11 %, Lê 9.5 % ...).
Hoàng/Huỳnh and Vũ/Võ are one name each, spelled the second way in the south.
Weights are relative; they need not sum to 100.
"""

from __future__ import annotations

from typing import Final

# (northern spelling, southern spelling, weight)
FAMILY_NAMES: Final[tuple[tuple[str, str, float], ...]] = (
    ("Nguyễn", "Nguyễn", 38.0),
    ("Trần", "Trần", 11.0),
    ("Lê", "Lê", 9.5),
    ("Phạm", "Phạm", 7.0),
    ("Hoàng", "Huỳnh", 5.1),
    ("Phan", "Phan", 4.5),
    ("Vũ", "Võ", 3.9),
    ("Đặng", "Đặng", 2.1),
    ("Bùi", "Bùi", 2.0),
    ("Đỗ", "Đỗ", 1.4),
    ("Hồ", "Hồ", 1.3),
    ("Ngô", "Ngô", 1.3),
    ("Dương", "Dương", 1.0),
    ("Lý", "Lý", 0.5),
    ("Đào", "Đào", 0.8),
    ("Đoàn", "Đoàn", 0.7),
    ("Trịnh", "Trịnh", 0.7),
    ("Trương", "Trương", 0.7),
    ("Đinh", "Đinh", 0.6),
    ("Lâm", "Lâm", 0.6),
    ("Mai", "Mai", 0.5),
    ("Lương", "Lương", 0.5),
    ("Hà", "Hà", 0.5),
    ("Cao", "Cao", 0.5),
    ("Tạ", "Tạ", 0.4),
    ("Tô", "Tô", 0.4),
    ("Lưu", "Lưu", 0.4),
    ("Vương", "Vương", 0.4),
    ("Châu", "Châu", 0.3),
    ("Thái", "Thái", 0.3),
    ("Quách", "Quách", 0.3),
    ("Phùng", "Phùng", 0.3),
    ("Kiều", "Kiều", 0.2),
    ("Lại", "Lại", 0.2),
    ("Triệu", "Triệu", 0.2),
    ("Tăng", "Tăng", 0.2),
    ("Nông", "Nông", 0.3),
    ("Lò", "Lò", 0.2),
    ("Hứa", "Hứa", 0.2),
    ("Khúc", "Khúc", 0.1),
    ("Thân", "Thân", 0.1),
    ("Văn", "Văn", 0.1),
)

MALE_MIDDLE_NAMES: Final[tuple[tuple[str, float], ...]] = (
    ("Văn", 30.0),
    ("Hữu", 6.0),
    ("Đức", 7.0),
    ("Minh", 9.0),
    ("Quang", 6.0),
    ("Công", 4.0),
    ("Thành", 4.0),
    ("Xuân", 3.0),
    ("Quốc", 5.0),
    ("Anh", 3.0),
    ("Gia", 4.0),
    ("Hoàng", 4.0),
    ("Trọng", 3.0),
    ("Đình", 4.0),
    ("Ngọc", 2.0),
    ("Thanh", 3.0),
    ("Tuấn", 2.0),
    ("Bảo", 3.0),
)

FEMALE_MIDDLE_NAMES: Final[tuple[tuple[str, float], ...]] = (
    ("Thị", 40.0),
    ("Ngọc", 9.0),
    ("Thu", 5.0),
    ("Thanh", 6.0),
    ("Kim", 4.0),
    ("Mỹ", 3.0),
    ("Hồng", 3.0),
    ("Phương", 3.0),
    ("Bảo", 3.0),
    ("Khánh", 3.0),
    ("Minh", 3.0),
    ("Thùy", 4.0),
    ("Hoài", 2.0),
    ("Diệu", 2.0),
    ("Ánh", 2.0),
    ("Quỳnh", 2.0),
    ("Hải", 2.0),
)

MALE_GIVEN_NAMES: Final[tuple[str, ...]] = (
    "An", "Anh", "Bảo", "Bình", "Cường", "Dũng", "Duy", "Đạt", "Định", "Đông",
    "Đức", "Giang", "Hải", "Hào", "Hiếu", "Hiệp", "Hòa", "Hoàng", "Hùng", "Hưng",
    "Huy", "Khang", "Khải", "Khánh", "Khoa", "Kiên", "Lâm", "Lợi", "Long", "Lộc",
    "Lực", "Mạnh", "Minh", "Nam", "Nghĩa", "Nhân", "Phát", "Phong", "Phúc", "Phước",
    "Quân", "Quang", "Quý", "Sơn", "Tài", "Tâm", "Thắng", "Thành", "Thịnh", "Thông",
    "Tiến", "Toàn", "Trí", "Trung", "Tú", "Tuấn", "Tùng", "Việt", "Vinh", "Vũ",
)  # fmt: skip

FEMALE_GIVEN_NAMES: Final[tuple[str, ...]] = (
    "An", "Anh", "Ánh", "Bích", "Châu", "Chi", "Diệp", "Dung", "Duyên", "Giang",
    "Hà", "Hân", "Hạnh", "Hằng", "Hậu", "Hiền", "Hoa", "Hoài", "Hồng", "Huệ",
    "Hương", "Huyền", "Khánh", "Lan", "Liên", "Linh", "Loan", "Ly", "Mai", "My",
    "Nga", "Ngân", "Ngọc", "Nguyệt", "Nhi", "Nhung", "Oanh", "Phương", "Phượng", "Quyên",
    "Quỳnh", "Tâm", "Thanh", "Thảo", "Thơ", "Thu", "Thủy", "Thư", "Tiên", "Trâm",
    "Trang", "Trinh", "Trúc", "Tuyết", "Uyên", "Vân", "Vy", "Xuân", "Yến", "Hạ",
)  # fmt: skip
