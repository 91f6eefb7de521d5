"""Open questions with reference answers: a built-in bank generated from templates.

Categories (``CATEGORIES``): capitals (both ways), opposites (both ways), definitions, chemical
symbols (both ways), animal young, plurals and singulars, number facts, arithmetic in words,
past tenses, colors of things, animal sounds, unit conversions, the order of days / months /
letters, and comparative / superlative forms: about 2,200 facts over fact tables written here,
each asked in one of 1-3 phrasings (about 6,300 distinct questions). Knob ``categories`` picks
which; a category is drawn with weight sqrt(number of its questions) so small categories are
not drawn over and over. Reference: ``{"answer": "<one short sentence>"}``; the reward model
grades a response against it. The teacher names what the question asks, then states the
reference sentence.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from typing import Any

_CAPITALS = (
    "France:Paris Germany:Berlin Italy:Rome Spain:Madrid Portugal:Lisbon Japan:Tokyo "
    "China:Beijing India:New_Delhi Egypt:Cairo Kenya:Nairobi Canada:Ottawa Mexico:Mexico_City "
    "Brazil:Brasilia Argentina:Buenos_Aires Peru:Lima Chile:Santiago Norway:Oslo "
    "Sweden:Stockholm Finland:Helsinki Denmark:Copenhagen Poland:Warsaw Austria:Vienna "
    "Greece:Athens Turkey:Ankara Russia:Moscow Ireland:Dublin Belgium:Brussels "
    "Netherlands:Amsterdam Switzerland:Bern Hungary:Budapest Australia:Canberra "
    "Thailand:Bangkok Vietnam:Hanoi Indonesia:Jakarta Iran:Tehran Iraq:Baghdad "
    "Morocco:Rabat Nigeria:Abuja Ghana:Accra Ethiopia:Addis_Ababa Cuba:Havana "
    "Colombia:Bogota Venezuela:Caracas Ukraine:Kyiv Romania:Bucharest Iceland:Reykjavik "
    "South_Korea:Seoul Philippines:Manila Pakistan:Islamabad Czechia:Prague "
    "New_Zealand:Wellington Saudi_Arabia:Riyadh Syria:Damascus Lebanon:Beirut Jordan:Amman "
    "Afghanistan:Kabul Nepal:Kathmandu Bangladesh:Dhaka Malaysia:Kuala_Lumpur "
    "Mongolia:Ulaanbaatar Uruguay:Montevideo Paraguay:Asuncion Ecuador:Quito Jamaica:Kingston "
    "Senegal:Dakar Algeria:Algiers Tunisia:Tunis Libya:Tripoli Sudan:Khartoum Uganda:Kampala "
    "Zimbabwe:Harare Zambia:Lusaka Angola:Luanda Mali:Bamako Croatia:Zagreb Serbia:Belgrade "
    "Bulgaria:Sofia Slovakia:Bratislava Slovenia:Ljubljana Estonia:Tallinn Latvia:Riga "
    "Lithuania:Vilnius Albania:Tirana Georgia:Tbilisi Armenia:Yerevan Qatar:Doha Oman:Muscat "
    "Cambodia:Phnom_Penh Laos:Vientiane North_Korea:Pyongyang United_Kingdom:London "
    "Nicaragua:Managua Honduras:Tegucigalpa Haiti:Port-au-Prince Costa_Rica:San_Jose "
    "Belarus:Minsk Moldova:Chisinau Azerbaijan:Baku Uzbekistan:Tashkent Kazakhstan:Astana "
    "Rwanda:Kigali Somalia:Mogadishu Madagascar:Antananarivo Namibia:Windhoek Botswana:Gaborone "
    "Cyprus:Nicosia Malta:Valletta Bahrain:Manama Yemen:Sanaa Myanmar:Naypyidaw"
)
_OPPOSITES = (
    "hot:cold big:small up:down fast:slow happy:sad light:dark open:closed early:late "
    "full:empty hard:soft old:new rich:poor strong:weak wet:dry high:low loud:quiet "
    "thick:thin push:pull win:lose inside:outside above:below day:night first:last "
    "buy:sell give:take true:false clean:dirty sweet:sour heavy:light long:short wide:narrow "
    "young:old near:far left:right begin:end arrive:leave love:hate question:answer "
    "friend:enemy safe:dangerous cheap:expensive awake:asleep import:export north:south "
    "east:west remember:forget accept:refuse increase:decrease "
    "tall:short laugh:cry black:white in:out on:off yes:no always:never before:after "
    "come:go start:finish top:bottom front:back good:bad right:wrong easy:difficult "
    "alive:dead boy:girl king:queen brother:sister summer:winter sunrise:sunset "
    "entrance:exit maximum:minimum positive:negative success:failure polite:rude "
    "brave:cowardly generous:selfish patient:impatient possible:impossible visible:invisible "
    "public:private ancient:modern rough:smooth sharp:blunt tight:loose deep:shallow "
    "shout:whisper borrow:lend catch:throw float:sink freeze:melt attack:defend "
    "together:apart everything:nothing everyone:nobody often:rarely victory:defeat "
    "noisy:silent fresh:stale raw:cooked single:married asleep:awake wild:tame "
    "major:minor include:exclude appear:disappear agree:disagree employer:employee "
    "plus:minus future:past "
)
_PLURALS = (
    "mouse:mice child:children man:men woman:women tooth:teeth foot:feet goose:geese "
    "person:people ox:oxen cactus:cacti knife:knives leaf:leaves wolf:wolves life:lives "
    "city:cities baby:babies box:boxes bus:buses fish:fish sheep:sheep deer:deer "
    "potato:potatoes hero:heroes half:halves analysis:analyses "
    "cat:cats dog:dogs book:books tree:trees car:cars house:houses apple:apples chair:chairs "
    "table:tables bird:birds horse:horses girl:girls boy:boys star:stars river:rivers "
    "church:churches watch:watches dish:dishes glass:glasses fox:foxes class:classes "
    "lady:ladies party:parties story:stories family:families country:countries berry:berries "
    "key:keys toy:toys day:days monkey:monkeys shelf:shelves wife:wives loaf:loaves "
    "thief:thieves calf:calves tomato:tomatoes echo:echoes crisis:crises thesis:theses "
    "fungus:fungi nucleus:nuclei radius:radii phenomenon:phenomena criterion:criteria "
    "louse:lice moose:moose series:series species:species bench:benches brush:brushes "
    "wish:wishes kiss:kisses puppy:puppies penny:pennies fly:flies army:armies "
    "roof:roofs chief:chiefs piano:pianos photo:photos zoo:zoos"
)
_PAST = (
    "go:went see:saw eat:ate take:took give:gave come:came run:ran write:wrote speak:spoke "
    "drink:drank swim:swam sing:sang begin:began fly:flew know:knew grow:grew throw:threw "
    "draw:drew drive:drove ride:rode rise:rose break:broke choose:chose freeze:froze "
    "steal:stole wake:woke wear:wore tear:tore bear:bore forget:forgot get:got "
    "sit:sat stand:stood understand:understood win:won buy:bought bring:brought think:thought "
    "fight:fought catch:caught teach:taught seek:sought sell:sold tell:told find:found "
    "hold:held make:made say:said pay:paid lay:laid leave:left feel:felt keep:kept sleep:slept "
    "meet:met lead:led feed:fed send:sent spend:spent build:built lend:lent lose:lost "
    "mean:meant hear:heard have:had do:did be:was fall:fell shine:shone shoot:shot "
    "bite:bit hide:hid slide:slid light:lit dig:dug stick:stuck hang:hung swing:swung "
    "ring:rang sink:sank shrink:shrank spin:spun strike:struck become:became "
    "put:put cut:cut hit:hit let:let set:set shut:shut cost:cost hurt:hurt quit:quit "
    "walk:walked talk:talked play:played jump:jumped cook:cooked open:opened close:closed "
    "help:helped watch:watched clean:cleaned call:called ask:asked work:worked "
    "live:lived love:loved move:moved smile:smiled dance:danced stop:stopped plan:planned "
    "drop:dropped hug:hugged cry:cried try:tried carry:carried study:studied marry:married "
    "want:wanted need:needed start:started wait:waited paint:painted visit:visited "
    "climb:climbed laugh:laughed listen:listened learn:learned push:pushed pull:pulled"
)
_COLORS = (  # (thing, color)
    ("a banana", "yellow"), ("grass", "green"), ("snow", "white"), ("coal", "black"),
    ("a ripe tomato", "red"), ("a carrot", "orange"), ("a lemon", "yellow"), ("milk", "white"),
    ("a polar bear", "white"), ("a crow", "black"), ("blood", "red"), ("a lime", "green"),
    ("chocolate", "brown"), ("a pumpkin", "orange"), ("a strawberry", "red"),
    ("a cherry", "red"), ("an eggplant", "purple"), ("a fire truck", "red"),
    ("a raven", "black"), ("a flamingo", "pink"), ("a canary", "yellow"),
    ("a cucumber", "green"), ("cotton", "white"), ("chalk", "white"), ("ketchup", "red"),
    ("mustard", "yellow"), ("a plum", "purple"), ("a ruby", "red"), ("an emerald", "green"),
    ("a sapphire", "blue"), ("soot", "black"), ("a pea", "green"), ("broccoli", "green"),
    ("salt", "white"), ("a panda", "black and white"), ("a zebra", "black and white"),
    ("the sky on a clear day", "blue"), ("a tree trunk", "brown"), ("an orange", "orange"),
    ("a lettuce leaf", "green"), ("a swan", "white"), ("a grape", "purple or green"),
    ("a school bus", "yellow"), ("a stop sign", "red"), ("a frog", "green"),
    ("an egg yolk", "yellow"), ("a walnut shell", "brown"), ("a lump of charcoal", "black"),
)
_SOUNDS = (
    "cow:moos dog:barks cat:meows sheep:bleats duck:quacks pig:oinks horse:neighs lion:roars "
    "owl:hoots snake:hisses bee:buzzes frog:croaks rooster:crows wolf:howls mouse:squeaks "
    "donkey:brays hen:clucks turkey:gobbles goose:honks elephant:trumpets crow:caws "
    "pigeon:coos dove:coos bear:growls tiger:roars cricket:chirps goat:bleats "
    "monkey:chatters hyena:laughs sparrow:chirps"
)
_UNITS = (  # (big unit, small unit, how many small units in one big unit)
    ("meters", "centimeters", 100), ("kilometers", "meters", 1000),
    ("kilograms", "grams", 1000), ("liters", "milliliters", 1000), ("hours", "minutes", 60),
    ("minutes", "seconds", 60), ("days", "hours", 24), ("weeks", "days", 7),
    ("years", "months", 12), ("feet", "inches", 12), ("decades", "years", 10),
    ("centuries", "years", 100), ("meters", "millimeters", 1000),
)
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_MONTHS = ("January February March April May June July August September October November "
           "December").split()
_COMPARE = (  # adjective:comparative:superlative
    "big:bigger:biggest small:smaller:smallest tall:taller:tallest short:shorter:shortest "
    "fast:faster:fastest slow:slower:slowest hot:hotter:hottest cold:colder:coldest "
    "old:older:oldest young:younger:youngest happy:happier:happiest sad:sadder:saddest "
    "good:better:best bad:worse:worst far:farther:farthest long:longer:longest "
    "strong:stronger:strongest weak:weaker:weakest easy:easier:easiest hard:harder:hardest "
    "heavy:heavier:heaviest light:lighter:lightest rich:richer:richest poor:poorer:poorest "
    "wide:wider:widest thin:thinner:thinnest fat:fatter:fattest big:bigger:biggest "
    "early:earlier:earliest late:later:latest large:larger:largest safe:safer:safest "
    "loud:louder:loudest quiet:quieter:quietest clean:cleaner:cleanest dark:darker:darkest "
    "bright:brighter:brightest smart:smarter:smartest kind:kinder:kindest busy:busier:busiest "
    "funny:funnier:funniest pretty:prettier:prettiest deep:deeper:deepest high:higher:highest "
    "low:lower:lowest near:nearer:nearest new:newer:newest cheap:cheaper:cheapest "
    "simple:simpler:simplest brave:braver:bravest wet:wetter:wettest dry:drier:driest"
)
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_OPS = (("plus", lambda a, b: a + b, 20), ("minus", lambda a, b: a - b, 20),
        ("times", lambda a, b: a * b, 10))
_DEFINITIONS = (
    ("a triangle", "a shape with three sides"), ("a square", "a shape with four equal sides"),
    ("a noun", "a word that names a person, place or thing"),
    ("a verb", "a word that describes an action"), ("a prime number",
     "a whole number greater than 1 whose only divisors are 1 and itself"),
    ("an island", "land surrounded by water"), ("a desert", "a very dry region with little rain"),
    ("a mammal", "a warm-blooded animal that feeds its young with milk"),
    ("a planet", "a large body that orbits a star"), ("a volcano",
     "an opening in the ground where lava comes out"), ("photosynthesis",
     "the process plants use to make food from sunlight"), ("evaporation",
     "the change of a liquid into a gas"), ("a thermometer", "a tool that measures temperature"),
    ("a dictionary", "a book that lists words and their meanings"),
    ("an atlas", "a book of maps"), ("a carnivore", "an animal that eats meat"),
    ("a herbivore", "an animal that eats plants"), ("gravity",
     "the force that pulls objects toward each other"), ("a synonym",
     "a word with the same meaning as another word"), ("an antonym",
     "a word with the opposite meaning of another word"), ("a fraction",
     "a part of a whole"), ("a continent", "one of the large land masses of the earth"),
    ("a glacier", "a large slow river of ice"), ("a peninsula",
     "land surrounded by water on three sides"), ("an orbit",
     "the curved path of one body around another"), ("a battery",
     "a device that stores electrical energy"), ("a habitat",
     "the natural home of an animal or plant"), ("a vaccine",
     "a substance that trains the body to fight a disease"), ("a budget",
     "a plan for spending money"), ("a recipe", "instructions for cooking a dish"),
    ("an algorithm", "a step by step procedure for solving a problem"),
    ("a molecule", "a group of atoms bonded together"), ("an ecosystem",
     "a community of living things and their environment"), ("erosion",
     "the wearing away of land by water or wind"), ("a compass",
     "a tool that shows direction"), ("a census", "an official count of a population"),
    ("a democracy", "a system of government in which people vote"),
    ("a harbor", "a sheltered place where ships can stay"), ("a fossil",
     "the preserved remains of an ancient living thing"), ("a verb tense",
     "the form of a verb that shows time"),
)
_SYMBOLS = (
    "hydrogen:H helium:He carbon:C nitrogen:N oxygen:O sodium:Na magnesium:Mg aluminum:Al "
    "silicon:Si phosphorus:P sulfur:S chlorine:Cl potassium:K calcium:Ca iron:Fe copper:Cu "
    "zinc:Zn silver:Ag gold:Au tin:Sn lead:Pb mercury:Hg neon:Ne argon:Ar uranium:U iodine:I"
)
_YOUNG = (
    "cat:kitten dog:puppy cow:calf horse:foal sheep:lamb goat:kid pig:piglet duck:duckling "
    "frog:tadpole bear:cub lion:cub deer:fawn goose:gosling swan:cygnet kangaroo:joey "
    "owl:owlet eagle:eaglet hen:chick butterfly:caterpillar seal:pup"
)
_NUMBERS = (  # (question ending, answer sentence)
    ("days are in a week", "There are seven days in a week."),
    ("months are in a year", "There are twelve months in a year."),
    ("hours are in a day", "There are 24 hours in a day."),
    ("minutes are in an hour", "There are 60 minutes in an hour."),
    ("seconds are in a minute", "There are 60 seconds in a minute."),
    ("legs does a spider have", "A spider has eight legs."),
    ("legs does an insect have", "An insect has six legs."),
    ("sides does a hexagon have", "A hexagon has six sides."),
    ("sides does a pentagon have", "A pentagon has five sides."),
    ("sides does an octagon have", "An octagon has eight sides."),
    ("continents are there on earth", "There are seven continents on earth."),
    ("planets are in the solar system", "There are eight planets in the solar system."),
    ("days are in a leap year", "There are 366 days in a leap year."),
    ("centimeters are in a meter", "There are 100 centimeters in a meter."),
    ("grams are in a kilogram", "There are 1000 grams in a kilogram."),
    ("players does a soccer team have on the field", "A soccer team has eleven players on "
     "the field."),
    ("strings does a standard guitar have", "A standard guitar has six strings."),
    ("weeks are in a year", "There are 52 weeks in a year."),
    ("years are in a century", "There are 100 years in a century."),
    ("colors are in a rainbow", "There are seven colors in a rainbow."),
)



CATEGORIES = ("capital", "opposite", "definition", "symbol", "young", "plural", "number",
              "arithmetic", "past", "color", "sound", "unit", "order", "compare")
DEFAULTS: dict[str, Any] = {"categories": CATEGORIES}

Fact = tuple[tuple[str, ...], str, str]  # (question phrasings, reference sentence, what it asks)


def _pairs(text: str) -> list[tuple[str, ...]]:
    """'A:B C_D:E' -> [("A", "B"), ("C D", "E")] (underscores stand for spaces)."""
    return [tuple(w.replace("_", " ") for w in item.split(":")) for item in text.split()]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def number_words(n: int) -> str:
    """0 <= n < 1000 in English words: 42 -> 'forty-two', 105 -> 'one hundred five'."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    rest = n % 100
    return f"{_ONES[n // 100]} hundred" + ("" if rest == 0 else " " + number_words(rest))


def _unique(facts: list[Fact]) -> list[Fact]:
    """Drop a fact whose first phrasing was already asked (keeps one answer per question)."""
    seen: set[str] = set()
    out = []
    for fact in facts:
        if fact[0][0] not in seen:
            seen.add(fact[0][0])
            out.append(fact)
    return out


def _geo_and_words() -> dict[str, list[Fact]]:
    bank: dict[str, list[Fact]] = {"capital": [], "opposite": [], "plural": [], "past": []}
    for country, city in _pairs(_CAPITALS):
        the = "the " if country.split()[0] in ("United", "Netherlands", "Philippines") else ""
        bank["capital"].append(((f"What is the capital of {the}{country}?",
                                 f"Which city is the capital of {the}{country}?",
                                 f"Name the capital city of {the}{country}."),
                                f"The capital of {the}{country} is {city}.",
                                f"the capital of {the}{country}"))
        if country not in city:
            bank["capital"].append(((f"Of which country is {city} the capital?",
                                     f"Which country has {city} as its capital?"),
                                    f"{city} is the capital of {the}{country}.",
                                    f"the country whose capital is {city}"))
    for a, b in _pairs(_OPPOSITES) + [(b, a) for a, b in _pairs(_OPPOSITES)]:
        bank["opposite"].append(((f"What is the opposite of '{a}'?",
                                  f"What word means the opposite of '{a}'?",
                                  f"The opposite of '{a}' is which word?"),
                                 f"The opposite of '{a}' is '{b}'.", f"the opposite of '{a}'"))
    for one, many in _pairs(_PLURALS):
        bank["plural"].append(((f"What is the plural of '{one}'?",
                                f"Write the plural form of '{one}'.",
                                f"In the plural, '{one}' becomes what?"),
                               f"The plural of '{one}' is '{many}'.", f"the plural of '{one}'"))
        bank["plural"].append(((f"What is the singular of '{many}'?",
                                f"Write the singular form of '{many}'.",
                                f"The word '{many}' is the plural of what?"),
                               f"The singular of '{many}' is '{one}'.",
                               f"the singular of '{many}'"))
    for verb, past in _pairs(_PAST):
        bank["past"].append(((f"What is the past tense of '{verb}'?",
                              f"Give the past tense of '{verb}'.",
                              f"Write the past form of '{verb}'."),
                             f"The past tense of '{verb}' is '{past}'.",
                             f"the past tense of '{verb}'"))
    return bank


def _science_and_animals() -> dict[str, list[Fact]]:
    bank: dict[str, list[Fact]] = {"definition": [], "symbol": [], "young": [], "sound": [],
                                   "color": []}
    for term, meaning in _DEFINITIONS:
        bank["definition"].append(((f"What is {term}?", f"Define {term} in one sentence.",
                                    f"Explain briefly what {term} is."),
                                   f"{_cap(term)} is {meaning}.", f"a definition of {term}"))
    for element, sym in _pairs(_SYMBOLS):
        bank["symbol"].append(((f"What is the chemical symbol for {element}?",
                                f"Which symbol stands for {element} in chemistry?",
                                f"{_cap(element)} has which chemical symbol?"),
                               f"The chemical symbol for {element} is {sym}.",
                               f"the symbol of {element}"))
        bank["symbol"].append(((f"Which element has the chemical symbol {sym}?",
                                f"What element does the symbol {sym} stand for?",
                                f"Which element is {sym} the symbol of?"),
                               f"{sym} is the chemical symbol for {element}.",
                               f"the element with symbol {sym}"))
    for animal, baby in _pairs(_YOUNG):
        bank["young"].append(((f"What is a baby {animal} called?",
                               f"What do we call a young {animal}?",
                               f"A young {animal} is called what?"),
                              f"A baby {animal} is called {_article(baby)} {baby}.",
                              f"the young of {_article(animal)} {animal}"))
    for thing, color in _COLORS:
        bank["color"].append(((f"What color is {thing}?", f"What is the usual color of {thing}?",
                               f"Name the color of {thing}."),
                              f"{_cap(thing)} is {color}.", f"the color of {thing}"))
    for animal, verb in _pairs(_SOUNDS):
        a = f"{_article(animal)} {animal}"
        bank["sound"].append(((f"What sound does {a} make?", f"What noise does {a} make?",
                               f"How does {a} sound?"),
                              f"{_cap(a)} {verb}.", f"the sound of {a}"))
    return bank


def _numbers_and_order() -> dict[str, list[Fact]]:
    bank: dict[str, list[Fact]] = {"number": [], "arithmetic": [], "unit": [], "order": []}
    for what, sentence in _NUMBERS:
        bank["number"].append(((f"How many {what}?",), sentence, f"how many {what}"))
    for op, fn, top in _OPS:
        for a, b in itertools.product(range(top + 1), repeat=2):
            if fn(a, b) < 0:
                continue
            x, y, z = number_words(a), number_words(b), number_words(fn(a, b))
            bank["arithmetic"].append(((f"What is {x} {op} {y}?", f"How much is {x} {op} {y}?",
                                        f"Say in words what {x} {op} {y} is."),
                                       f"{_cap(x)} {op} {y} is {z}.", f"{x} {op} {y} in words"))
    for big, small, factor in _UNITS:
        for n in range(2, 21):
            bank["unit"].append(((f"How many {small} are in {n} {big}?",
                                  f"Convert {n} {big} to {small}.",
                                  f"Express {n} {big} in {small}."),
                                 f"{n} {big} equal {n * factor} {small}.",
                                 f"{n} {big} in {small}"))
    seqs = (("day", _DAYS), ("month", _MONTHS), ("letter", list("abcdefghijklmnopqrstuvwxyz")))
    for kind, items in seqs:
        cyclic = kind != "letter"
        for i, item in enumerate(items):
            for rel, j in (("after", i + 1), ("before", i - 1)):
                if not cyclic and not 0 <= j < len(items):
                    continue
                other = items[j % len(items)]
                bank["order"].append(((f"What {kind} comes {rel} {item}?",
                                       f"Name the {kind} {rel} {item}."),
                                      f"The {kind} {rel} {item} is {other}.",
                                      f"the {kind} {rel} {item}"))
    return bank


def _compare() -> dict[str, list[Fact]]:
    facts: list[Fact] = []
    for adj, more, most in _pairs(_COMPARE):
        facts.append(((f"What is the comparative form of '{adj}'?",
                       f"Give the comparative of '{adj}'.",
                       f"In the comparative, '{adj}' becomes what?"),
                      f"The comparative of '{adj}' is '{more}'.", f"the comparative of '{adj}'"))
        facts.append(((f"What is the superlative form of '{adj}'?",
                       f"Give the superlative of '{adj}'.",
                       f"In the superlative, '{adj}' becomes what?"),
                      f"The superlative of '{adj}' is '{most}'.",
                      f"the superlative of '{adj}'"))
    return {"compare": facts}


def _bank() -> dict[str, list[Fact]]:
    """category -> [(question phrasings, reference sentence, what the question asks)]."""
    bank = {**_geo_and_words(), **_science_and_animals(), **_numbers_and_order(), **_compare()}
    return {c: _unique(bank[c]) for c in CATEGORIES}


BANK = _bank()
# draw weight of a category: sqrt(its number of distinct questions)
WEIGHTS = {c: math.sqrt(sum(len(f[0]) for f in facts)) for c, facts in BANK.items()}


def check_knobs(k: dict[str, Any]) -> None:
    if not k["categories"] or set(k["categories"]) - set(CATEGORIES):
        raise ValueError(f"open_qa knob categories={k['categories']!r}: choose from {CATEGORIES}")


def make(rng: random.Random, k: dict[str, Any]) -> tuple[str, dict, dict]:
    cats = k["categories"]
    cum = list(itertools.accumulate(WEIGHTS[c] for c in cats))
    category = cats[min(bisect.bisect_right(cum, rng.random() * cum[-1]), len(cats) - 1)]
    phrasings, answer, asks = rng.choice(BANK[category])
    return rng.choice(phrasings), {"answer": answer}, {"category": category, "asks": asks}


def teacher(reference: dict, meta: dict) -> str:
    asks = meta.get("asks", "a short fact")
    return f"<think>\nThe question asks for {asks}.\n</think>\n{reference['answer']}"
