"""Place names (pinyin, Beijing flavour) for roads, compounds and buildings."""

from __future__ import annotations

STEMS = [
    "Dongsi",
    "Xisi",
    "Chaoyang",
    "Jianguo",
    "Fuxing",
    "Andingmen",
    "Dongzhimen",
    "Gulou",
    "Jiaodaokou",
    "Beixinqiao",
    "Chongwen",
    "Xuanwu",
    "Guangqu",
    "Zhushikou",
    "Qianmen",
    "Wangfujing",
    "Dengshikou",
    "Zhangzizhong",
    "Ping'an",
    "Di'anmen",
    "Jingshan",
    "Beiheyan",
    "Nanheyan",
    "Dongdan",
    "Xidan",
    "Hepingli",
    "Hufang",
    "Liulichang",
    "Taoranting",
    "Tiantan",
    "Yonghegong",
    "Shichahai",
    "Nanluoguxiang",
    "Huguosi",
    "Baitasi",
    "Fuchengmen",
    "Xizhimen",
    "Deshengmen",
    "Madian",
    "Anzhen",
    "Huixin",
    "Tuanjiehu",
    "Jinsong",
    "Panjiayuan",
    "Fangzhuang",
    "Baiwanzhuang",
    "Ganjiakou",
    "Sanlitun",
    "Liangmaqiao",
    "Jiuxianqiao",
]
ROAD_SUFFIX = {"primary": "Dajie", "secondary": "Lu", "residential": "Hutong", "service": "Xiang"}
BUILDING_SUFFIX = {
    "residential": ["Li", "Jiayuan", "Xiaoqu", "Yuan"],
    "commercial": ["Plaza", "Tower", "Center", "Mansion"],
    "industrial": ["Works", "Depot", "Factory"],
    "public": ["School", "Hospital", "Library", "District Office", "Community Center"],
}


def stem(i: int) -> str:
    n = len(STEMS)
    return STEMS[i % n] + ("" if i < n else f" {i // n + 1}")


def road_name(i: int, cls: str) -> str:
    return f"{stem(i)} {ROAD_SUFFIX[cls]}"


def building_name(use: str, block: int, k: int) -> str:
    suffixes = BUILDING_SUFFIX[use]
    base = f"{stem(block * 7 + 3)} {suffixes[block % len(suffixes)]}"
    if use == "residential":
        return f"{base} Building {k + 1}"
    return f"{base} No. {k + 1}" if k else base
