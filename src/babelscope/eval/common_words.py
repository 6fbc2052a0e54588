"""Common words that are also spelled like first names: the mark counter's stop list.

Two hand-written lists of common words (nouns, adjectives, verb forms and particles a children's story uses),
Modern Standard Arabic and English, each written for this purpose and kept short. They are not name lists:
the stop list is their intersection with storyworld's names in the same script (`stop_names`), so a name joins
it only when it is also an everyday word: ملك "king" (Malak), نور "light" (Nour), أمل "hope" (Amal), فهد
"cheetah" (Fahd), سام "poisonous" (the transliteration of Sam), لونا "a colour" (Luna), Rose, Grace, Robin...
Such a word counts as a name only where the text puts it in a name position (see `eval.marks`); elsewhere it is
reported as ambiguous. Arabic entries are written without diacritics and without the article ال.
"""

from __future__ import annotations

import re
from functools import cache

COMMON_ARABIC = frozenset(re.findall(r"\S+", """
ملك نور أمل فهد سام ليث أسد نمر صقر قمر شمس بدر نجمة سماء بحر نهر ورد وردة زهرة ياسمين ريم غزال
هدى ندى منى سعد سعيد فرح فرحة حنان رحمة بسمة بشرى صفاء ضحى غدير هالة هبة وفاء بيان حنين غزل منار نغم
آية تغريد روضة سهام سماح رضا صالح صلاح فؤاد كمال جمال نادر وسيم حازم خليل راشد رشيد عامر عزيز فريد هادي
وديع بشير جواد رفيق شاكر ماهر مجد مختار منير مؤمن نجيب وسام كريم نبيل عادل سلطان أنس باسم رائد علاء
مهدي ناجي عارف غالب جنى جود دانة رؤى عبير سناء كوثر هناء نهى شذى صبا سلام إيمان أمان أمين لطيف سالم حسن
جميل جميلة طيب لطيفة سعيدة صغير صغيرة كبير كبيرة طويل قصير سريع بطيء جديد قديم حلو مر نظيف
بيت باب شجرة حديقة كلب قطة طائر عصفور سمكة بطة أرنب حصان جمل فأر دب قرد فيل لعبة كرة كتاب قلم
ماء خبز تفاح حليب كعكة طعام نوم يوم ليلة صباح مساء مطر ثلج ريح غيمة جبل بحيرة غابة طريق مدرسة
أم أب أخ أخت جد جدة صديق صديقة ولد بنت طفل طفلة معلم معلمة رجل امرأة
قال قالت ذهب ذهبت رأى رأت لعب لعبت أكل أكلت نام نامت ضحك ضحكت بكى بكت ركض ركضت
جو بن بول دورا لونا بيني صوفي دولي نورا آني
""".strip()))

COMMON_ENGLISH = frozenset(re.findall(r"\S+", """
rose lily daisy ivy holly iris hazel violet willow olive ruby amber pearl grace hope joy faith penny
robin sandy rocky woody dale lance miles mark jack bob rob sue frank max bill will may june april
kitty dolly patty teddy piper cooper tanner chester carol brook summer dawn sky star sunny rusty
buddy ginger honey candy coco pepper bear tiger sparrow finch crow
the a an and but or so then when big small little happy sad good bad red blue green yellow
dog cat bird tree house park ball toy book sun moon rain snow
""".strip()))


@cache
def stop_names(lang: str) -> frozenset[str]:
    """storyworld's first names, in the script of `lang`, that are also common words (Latin ones lower-cased)."""
    from babelscope.corpus.storyworld import ARABIC_NAMES, ENGLISH_NAMES

    if lang == "ar":
        return frozenset(n.arabic for n in (*ENGLISH_NAMES, *ARABIC_NAMES)) & COMMON_ARABIC
    return frozenset(n.latin.lower() for n in (*ENGLISH_NAMES, *ARABIC_NAMES)) & COMMON_ENGLISH
