"""Generate a small synthetic English corpus in the allenai/c4 on-disk format.

The quickstart trains on ``data/sample/`` so that it runs without a network. The text comes
from a small probabilistic grammar written for this project, so it is free to ship: nothing is
taken from books, websites or datasets. Each document has one topic (weather, recipes, match
reports, reviews, stories, science notes, travel notes) with its own vocabulary, agreement,
numbers, names and dates: structure a tiny model can learn, but not trivially memorise. Files
are gzipped JSON lines with C4's keys and names; a given ``--seed`` gives byte-identical files.

Example:
    python tools/make_sample_corpus.py --out data/sample --seed 1234
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import random
import re
import tempfile
from pathlib import Path

SHARED = """
name = Anna | Ben | Clara | David | Elena | Felix | Grace | Hugo | Ida | Jonas | Kira | Leo | Maya
  | Nils | Olga | Pablo | Rosa | Samir | Tessa | Umar | Vera | Walter | Yara | Zoe | Marta | Tomas
  | Lina | Oskar | Nora | Erik | Priya | Kofi | Mei | Ravi | Sofia | Aaron
surname = Abbott | Brandt | Castell | Dorn | Ellis | Farrow | Greaves | Holm | Ivers | Jansen
  | Keller | Lund | Morrow | Novak | Ortega | Pike | Quinn | Rask | Sutter | Thorne | Varga | Wilde
city = Aldmoor | Brenfield | Carrow Bay | Dunmere | Eastholt | Fallowby | Greywick | Hollin
  | Innisvale | Kestrel Point | Lowmarsh | Marrowgate | Northby | Oakhurst | Pellham | Redwater
  | Stonebridge | Thornwick | Upton Vale | Westmere
weekday = Monday | Tuesday | Wednesday | Thursday | Friday | Saturday | Sunday
month = January | February | March | April | May | June | July | August | September | October
  | November | December
date = <weekday>, <month> <#1,28> | <month> <#1,28> | <month> <#1,28>, <#1998,2019>
person = <name> <surname> | <name> | <name> <surname>
hour = <#1,12> o'clock | half past <#1,12> | <#6,11> in the morning | <#1,9> in the evening
adv = quickly | slowly | quietly | carefully | suddenly | gently | finally | happily
"""

TOPICS = {
    "weather": """
title = Weather for <$city> on <weekday> | <$city> forecast for <$date> | Weekend outlook: <$city>
intro = Here is the forecast for <$city> and the surrounding area. | Good morning from <$city>.
  | The weather office in <$city> has issued its outlook for <$date>.
body = <sky_sg> is expected in the <part>, with temperatures near <#-5,34> degrees.
  | <sky_pl> are expected in the <part>, with temperatures between <#-5,12> and <#13,34> degrees.
  | The <part> will bring <sky_sg> and a <wind> wind from the <dir>.
  | Expect <sky_pl> over <$city> by <hour>, turning <temp> later.
  | Winds will reach <#5,60> kilometres per hour near the <place>.
  | There is a small chance of <precip> along the <place> in the <part>.
  | Drivers near the <place> should watch for <hazard>.
  | Temperatures will fall to <#-8,10> degrees overnight, so <advice>.
  | By <weekday> the air will feel <temp>, and <sky_pl> will clear from the <dir>.
  | <precip> may reach the <place> before <hour>. | It will stay <temp> and <sky_adj>.
  | Last <weekday> brought <#2,40> millimetres of rain to <$city>, the most since <month>.
outro = The next update will follow at <hour>. | Stay safe and <advice>. | That is all for <$date>.
sky_sg = a clear sky | a light drizzle | thick fog | heavy rain | a cold front | a mild breeze
  | bright sunshine | a thunderstorm | light snow | a band of cloud
sky_pl = clear skies | scattered showers | grey clouds | strong gusts | heavy storms | sunny spells
  | patchy clouds | snow flurries | bright intervals | rolling clouds
sky_adj = dry | cloudy | windy | damp | bright | grey | calm | stormy
part = morning | afternoon | evening | night | early hours | late afternoon
wind = cold | gentle | strong | fresh | warm | biting | steady
dir = north | south | east | west | northwest | southeast | coast | hills
temp = cold | cool | mild | warm | hot | chilly | humid | fresh
place = coast | river valley | hills | harbour | ring road | airport | old town | northern suburbs
precip = rain | sleet | hail | snow | drizzle | showers | thunder
hazard = ice on the roads | standing water | low visibility | fallen branches | strong crosswinds
advice = keep a coat nearby | take an umbrella | wrap up warm | drink plenty of water
  | check the roads before you leave | leave a little earlier than usual
""",
    "recipe": """
title = How to make <$dish> | Easy <$dish> for <weekday> night | My favourite <$dish>
intro = This <$dish> takes about <#20,90> minutes and serves <#2,8> people.
  | I first cooked this <$dish> for <person>, and it has been a favourite ever since.
  | If you have <ing> and <ing> at home, you can make <$dish> tonight.
body = Add one <unit> of <ing> to the <pot>. | Add <#2,5> <units> of <ing> and stir <adv>.
  | <verb> the <ings> and set them aside for <#2,15> minutes.
  | Heat the <pot> over a <heat> heat and add a pinch of <spice>.
  | Then <verb> the <veg> until it is <done>. | Next, <verb> the <ings> until they are <done>.
  | Season the <$dish> with <spice> and a little <liquid>.
  | Pour in <#100,500> millilitres of <liquid> and let it simmer for <#5,40> minutes.
  | Bake at <#160,220> degrees for <#15,60> minutes, until the top is <done>.
  | Stir in the <ings> and taste for salt. | Keep the <ings> separate until the last minute.
  | Do not let the <liquid> boil, or the <$dish> will turn <bad>.
  | The <ings> should be <done> but not <bad>.
outro = Serve the <$dish> <serve>. | Enjoy your <$dish>! | Leftover <$dish> keeps for <#2,4> days.
dish = lentil soup | tomato stew | onion tart | bean chili | pumpkin bread | rice pudding
  | mushroom risotto | apple cake | leek pie | pepper omelette | carrot salad | barley broth
ing = butter | flour | garlic | onion | rice | sugar | cheese | milk | spinach | barley | honey
  | yoghurt | lemon zest | ginger | oats | cream
veg = onion | carrot | potato | pepper | leek | apple | mushroom | courgette | squash
ings = carrots | tomatoes | potatoes | lentils | beans | mushrooms | apples | peppers | leeks | eggs
unit = cup | spoon | handful | jar | pinch
units = cups | spoons | handfuls | jars | pinches
pot = pan | pot | bowl | tray | dish | skillet
verb = chop | slice | fry | roast | grate | mix | whisk | boil | mash | stir
heat = low | medium | high | gentle
spice = salt | pepper | cumin | paprika | nutmeg | cinnamon | thyme | basil | chili
liquid = water | stock | milk | cream | wine | oil | vinegar
done = golden | soft | tender | crisp | smooth | brown | thick
bad = bitter | dry | soggy | tough | burnt | grainy
serve = warm with bread | with a green salad | straight from the oven | cold the next day
""",
    "sports": """
title = <$home> beat <$away> <$gw>-<$gl> | Match report: <$home> against <$away>
  | <$home> win at home on <weekday>
intro = <$home> won <$gw>-<$gl> against <$away> in front of <#2,40> thousand fans.
  | It was a <adj> afternoon for <$home>, who beat <$away> <$gw> goals to <$gl>.
  | <$away> travelled to <$home> on <date> and lost <$gw>-<$gl>.
body = In the <minute> minute <player> <action> from the <spot>.
  | <player> <action> just before half time. | The referee showed a yellow card to <player>.
  | <$away> had <#30,70> percent of the ball but created few chances.
  | <$home> pressed high and won the ball back near the <spot>.
  | After the break <$away> <tried> to come back, but the defence held firm.
  | The home side made <#1,5> changes, and <player> came on for <player>.
  | The coach, <person>, said the team had played <adj> football.
  | Fans sang for <#5,30> minutes after the <minute> minute goal.
  | <player> hit the post, and the rebound went wide.
  | The <adj> pitch made every pass difficult.
outro = <$home> play again on <weekday>. | The result lifts <$home> to <ordinal> place.
  | <$away> will hope to recover before <weekday>.
home = Aldmoor Rovers | Brenfield City | Dunmere United | Hollin Athletic | Northby Town
  | Pellham Wanderers
away = Redwater Albion | Stonebridge Rangers | Thornwick Lions | Westmere Harriers
  | Oakhurst Villa | Greywick Celtic
gw = 2 | 3 | 4 | 5
gl = 0 | 1
player = <name> <surname> | <surname>
action = scored | headed home | curled a shot in | tapped in | fired in a low shot
tried = tried | pushed | fought | battled | struggled
spot = edge of the box | left wing | right wing | penalty spot | far post | halfway line
adj = strong | tense | wet | muddy | brilliant | patient | nervous | solid
minute = <#4,9>th | <#11,19>th | <#2,8>0th | <#2,8><#4,9>th
ordinal = first | second | third | fourth | fifth | sixth | seventh | eighth
""",
    "review": """
title = Review: the <$brand> <$item> <$model> | <$brand> <$item>, <#1,5> stars
  | Is the <$brand> <$item> worth it?
intro = I bought the <$brand> <$item> <$model> in <month> and have used it every day since.
  | I paid <#20,400> dollars for this <$item>, and here is what I think.
  | My old <$item> broke, so I tried the <$brand> <$model>.
body = The <part> is <good>, but the <part> feels <poor>. | The <part> feels <good> and <good>.
  | Setup took <#2,30> minutes and the instructions were <clear>.
  | The battery lasts about <#3,40> hours, which is <fair>.
  | Compared with my old <$item>, the <part> is <comp> and the <part> is <comp>.
  | My <relative> says it is <good>, and I agree. | After <#2,11> weeks the <part> still works.
  | The <part> stopped working after <#2,9> days, so I contacted support.
  | Support replied within <#1,48> hours and sent a new <part>.
  | It weighs <#1,9> hundred grams, so it is <fair> to carry.
  | The <$brand> logo on the <part> is <good>, if a little <poor>.
outro = Overall I give the <$model> <#1,5> out of 5. | I would buy it again.
  | I would not buy it again. | Recommended for anyone who needs a <good> <$item>.
brand = Veltro | Kamoro | Brightline | Nordell | Qubix | Halden | Sorrel | Tamsin
item = kettle | blender | lamp | headset | backpack | toaster | camera | speaker | keyboard
model = X<#1,9>00 | Pro <#2,9> | Mini | Lite <#1,4> | S<#10,99>
part = handle | screen | lid | switch | cable | strap | button | case | base | speaker
good = sturdy | quiet | bright | light | solid | comfortable | elegant | reliable | simple
poor = cheap | loose | noisy | flimsy | awkward | stiff | dull | fragile
clear = clear | confusing | short | helpful | vague
fair = fine | impressive | disappointing | acceptable | great | poor
comp = better | worse | smaller | larger | louder | softer | lighter | heavier
relative = sister | brother | mother | father | partner | neighbour | friend | uncle | aunt
""",
    "story": """
title = The <$obj> of <$city> | <$hero> and the <adj> <$obj> | A <adj> night in <$city>
intro = Once, in the town of <$city>, there lived a <role> called <$hero>.
  | <$hero> had never left <$city> before the <season> of the <adj> <$obj>.
  | Nobody in <$city> remembered the <$obj> until <$hero> found it.
body = One <part> <$hero> walked to the <place> and found a <adj> <obj>.
  | <$hero> <said>, "We must take the <$obj> to the <place>."
  | <$friend>, who was a <role>, <said>, "I will come with you."
  | They walked for <#2,9> days until they reached the <place>.
  | <$hero> <adv> opened the <$obj>, and a <adj> light filled the room.
  | <$friend> was afraid of the <place>, but <$hero> was not.
  | The old <role> at the <place> smiled and <said>, "You are late."
  | That <part> <$hero> could not sleep and thought about the <$obj>.
  | <$friend> laughed <adv> and pointed at the <adj> <obj>.
  | The wind <moved> through the <place>, and the <$obj> began to glow.
  | <$hero> and <$friend> hid behind the <obj> and waited.
outro = From that day on, <$hero> kept the <$obj> safe.
  | And the people of <$city> still talk about the <$obj> today. | The end.
hero = <name>
friend = <name> the <role> | old <name> | young <name>
role = baker | sailor | farmer | teacher | miller | painter | fisher | clockmaker | shepherd
obj = lantern | key | map | mirror | box | bell | coin | book | stone | compass | letter
adj = strange | golden | silver | broken | hidden | forgotten | ancient | tiny | shining
place = harbour | forest | mill | market | bridge | tower | cave | river | chapel | garden
part = morning | evening | night | winter evening | summer morning | rainy afternoon
season = spring | summer | autumn | winter
said = said | whispered | shouted | asked | replied | muttered
moved = howled | whistled | rushed | crept | sang
""",
    "science": """
title = Notes on <$subject> | Why <$subject> matters | A short guide to <$subject>
intro = These notes describe a simple experiment on <$subject>.
  | <$subject> is easy to observe with <tool> and some patience.
  | Students often ask how <$subject> works, so here is a short explanation.
body = We measured the <qty> <#3,12> times with <tool>.
  | When the <qty> increases, the <qty> usually <change>.
  | The average <measure>, with a small error.
  | A <sample> was kept at <#4,80> degrees for <#2,48> hours.
  | Under the <tool>, the <sample> looked <obs>.
  | This suggests that the <qty> depends on the <qty>.
  | In <#1850,2015> a team led by <person> first described this effect.
  | The result did not change when the <sample> was replaced.
  | We repeated the test with a <sample> and found the same pattern.
  | The <qty> of each <sample> is shown in table <#1,6>.
outro = More work is needed to explain <$subject>. | The data are summarised in figure <#1,9>.
  | In short, <$subject> follows a simple rule.
subject = plant growth | crystal formation | heat transfer | sound | soil moisture
  | bird migration | tidal flow | magnetism | evaporation | seed germination
qty = temperature | pressure | mass | length | speed | density | humidity | volume | frequency
change = rises | falls | doubles | halves | stays the same | changes slowly
measure = temperature was <#4,80>.<#0,9> degrees | mass was <#1,99>.<#0,9> grams
  | length was <#1,99>.<#0,9> centimetres | speed was <#1,9>.<#0,9> metres per second
  | volume was <#1,99>.<#0,9> litres | frequency was <#20,900> hertz
tool = a thermometer | a microscope | a ruler | a balance | a stopwatch | a compass | a sensor
sample = leaf | crystal | water sample | soil core | copper wire | salt solution | seed
obs = cloudy | clear | layered | cracked | smooth | green | bright | uneven
""",
    "travel": """
title = <#2,10> days in <$city> | Travel notes: <$city> | Walking around <$city> in <month>
intro = We arrived in <$city> on <date> after a <#2,14> hour <transport> ride.
  | <$city> is a <adj> town that most visitors skip, which is a mistake.
  | I spent <#2,10> days in <$city> with my <relative>, and these are my notes.
body = The <sight> is a <#5,40> minute walk from the station.
  | We had <food> at a small <venue> near the <sight> for <#4,30> euros.
  | Tickets for the <sight> cost <#3,25> euros, and it is closed on <weekday>.
  | The best time to visit the <sight> is early in the <part>.
  | From the <sight> you can see the whole of <$city> on a <adj> day.
  | Take the <transport> to <city> if you have a spare <part>.
  | The owner of the <venue>, <person>, told us about a <adj> path along the <river>.
  | Our <stay> cost <#40,180> euros a night and was <adj>.
  | The streets around the <sight> are <adj> and full of <shops>.
  | On <weekday> there is a market with <food> and <shops>.
outro = I would happily go back to <$city>. | <$city> deserves more visitors.
  | Next time I will stay longer in <$city>.
adj = quiet | busy | charming | clean | lively | peaceful | colourful | sleepy | steep
sight = castle | cathedral | old harbour | museum | lighthouse | town hall | botanic garden
transport = train | bus | ferry | coach | tram
food = fresh fish | grilled vegetables | warm bread | local cheese | plum cake | noodle soup
venue = cafe | bakery | restaurant | bar | food stall
part = morning | afternoon | evening
stay = hotel | guest house | small flat | hostel
river = river | canal | coast | lake
shops = bookshops | bakeries | flower stalls | craft shops | tiny bars
relative = sister | brother | partner | parents | friend | cousin
""",
}

TOKEN = re.compile(r"<(#-?\d+,-?\d+|\$?\w+)>")
START = dt.datetime(2019, 4, 18, tzinfo=dt.timezone.utc)


def parse_rules(spec: str) -> dict[str, list[str]]:
    """Parses grammar rules written as ``name = alternative | alternative``.

    Args:
        spec: Rule text; a line starting with whitespace continues the previous rule.

    Returns:
        A mapping from rule name to its list of alternatives.
    """
    joined: dict[str, str] = {}
    name = ""
    for line in spec.strip().splitlines():
        if line[:1].isspace():
            joined[name] += " " + line.strip()
        elif line.strip():
            name, _, rest = line.partition("=")
            name = name.strip()
            joined[name] = rest
    return {key: [alt.strip() for alt in value.split("|")] for key, value in joined.items()}


GRAMMARS = {topic: {**parse_rules(SHARED), **parse_rules(spec)} for topic, spec in TOPICS.items()}


def expand(template: str, rules: dict[str, list[str]], rng: random.Random, bound: dict) -> str:
    """Expands ``<rule>``, ``<$rule>`` and ``<#lo,hi>`` placeholders recursively.

    Args:
        template: Text with placeholders.
        rules: Grammar rules of the current topic.
        rng: Random source.
        bound: Values of ``<$rule>`` placeholders, fixed for the whole document.

    Returns:
        The expanded text.
    """

    def replace(match: re.Match) -> str:
        key = match.group(1)
        if key.startswith("#"):
            low, high = map(int, key[1:].split(","))
            return str(rng.randint(low, high))
        if key.startswith("$"):
            if key not in bound:
                bound[key] = expand(rng.choice(rules[key[1:]]), rules, rng, bound)
            return bound[key]
        return expand(rng.choice(rules[key]), rules, rng, bound)

    return TOKEN.sub(replace, template)


def sentence(template: str, rules: dict[str, list[str]], rng: random.Random, bound: dict) -> str:
    """Expands ``template`` (see ``expand``), fixes ``a``/``an`` and capitalises the result.

    Returns:
        The finished sentence.
    """
    text = re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", expand(template, rules, rng, bound))
    return text[0].upper() + text[1:]


def make_document(rng: random.Random) -> dict[str, str]:
    """Generates one C4-style record for a randomly chosen topic.

    Args:
        rng: Random source.

    Returns:
        A record with the keys ``text``, ``timestamp`` and ``url``.
    """
    topic = rng.choice(sorted(GRAMMARS))
    rules, bound = GRAMMARS[topic], {}
    title = sentence("<title>", rules, rng, bound)
    target = min(600, max(50, int(rng.lognormvariate(5.4, 0.6))))
    paragraphs, current = [title], [sentence("<intro>", rules, rng, bound)]
    words = len(title.split()) + len(current[0].split())
    limit, deck = rng.randint(2, 6), []
    while words < target - 10:
        deck = deck or rng.sample(rules["body"], len(rules["body"]))  # no repeats within a deal
        current.append(sentence(deck.pop(), rules, rng, bound))
        words += len(current[-1].split())
        if len(current) >= limit:
            paragraphs.append(" ".join(current))
            current, limit = [], rng.randint(2, 6)
    current.append(sentence("<outro>", rules, rng, bound))
    paragraphs.append(" ".join(current))
    slug = "-".join(re.findall(r"[a-z0-9]+", title.lower())[:6])
    stamp = START + dt.timedelta(seconds=rng.randrange(9 * 86400))
    return {
        "text": "\n".join(paragraphs),
        "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "url": f"https://example.org/{topic}/{slug}-{rng.randint(1, 99999)}",
    }


def write_shard(path: Path, records: list[dict[str, str]]) -> None:
    """Writes records as gzipped JSON lines, atomically and byte-reproducibly.

    Args:
        path: Destination file.
        records: Records to write, one JSON object per line.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                for record in records:
                    gz.write((json.dumps(record) + "\n").encode("utf-8"))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    print(f"wrote {path} ({len(records)} docs, {path.stat().st_size:,} bytes)")


def main(argv: list[str] | None = None) -> None:
    """Parses arguments and writes the train and validation shards.

    Args:
        argv: Command-line arguments; ``sys.argv[1:]`` when None.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/sample"), help="output folder")
    parser.add_argument("--seed", type=int, default=1234, help="random seed")
    parser.add_argument("--train-shards", type=int, default=4, help="number of train files")
    parser.add_argument("--docs-per-shard", type=int, default=1100, help="documents per file")
    parser.add_argument("--validation-docs", type=int, default=220, help="validation documents")
    args = parser.parse_args(argv)

    seeder = random.Random(args.seed)
    train_rng = random.Random(seeder.getrandbits(64))
    validation_rng = random.Random(seeder.getrandbits(64))
    args.out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for shard in range(args.train_shards):
        records = [make_document(train_rng) for _ in range(args.docs_per_shard)]
        seen.update(record["text"] for record in records)
        name = f"c4-train.{shard:05d}-of-{args.train_shards:05d}.json.gz"
        write_shard(args.out / name, records)
    validation: list[dict[str, str]] = []
    while len(validation) < args.validation_docs:
        record = make_document(validation_rng)
        if record["text"] not in seen:
            validation.append(record)
    write_shard(args.out / "c4-validation.00000-of-00001.json.gz", validation)


if __name__ == "__main__":
    main()
