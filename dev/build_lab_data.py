"""Write the lab's shipped domains (raft_trainer/lab/data/*.jsonl) from the hand-written fact tables below.

    python dev/build_lab_data.py

Each domain: facts written by hand from general knowledge (entries whose answer is disputed or has changed recently
are left out), split into train and test **by entity** with a fixed seed, and gold answers rendered in a verbose,
formulaic register (a records office / reference-work style) that is far from how a language model answers a
question: the supervision-compatibility gap the lab needs. `answer` is that gold answer (the SFT target); `aliases`
are the short accepted answers (correct = one appears as a whole word in the model's answer).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "raft_trainer" / "lab" / "data"

# Countries whose capital is the country's own name, disputed, or recently moved are left out, and so are those the
# general probes or the eval's few-shot prompts mention (France, Japan, Italy, Germany, Spain, Canada, Brazil).
CAPITALS = """Afghanistan|Kabul;Albania|Tirana;Algeria|Algiers;Andorra|Andorra la Vella;Angola|Luanda;Argentina|Buenos Aires;
Armenia|Yerevan;Australia|Canberra;Austria|Vienna;Azerbaijan|Baku;Bahamas|Nassau;Bahrain|Manama;Bangladesh|Dhaka;
Barbados|Bridgetown;Belarus|Minsk;Belgium|Brussels;Belize|Belmopan;Bhutan|Thimphu;Botswana|Gaborone;Bulgaria|Sofia;
Burkina Faso|Ouagadougou;Cambodia|Phnom Penh;Cameroon|Yaoundé,Yaounde;Chad|N'Djamena,Ndjamena;Chile|Santiago;China|Beijing,Peking;
Colombia|Bogotá,Bogota;Costa Rica|San José,San Jose;Croatia|Zagreb;Cuba|Havana;Cyprus|Nicosia;Czech Republic|Prague;
Denmark|Copenhagen;Dominican Republic|Santo Domingo;Ecuador|Quito;Egypt|Cairo;El Salvador|San Salvador;Eritrea|Asmara;
Estonia|Tallinn;Ethiopia|Addis Ababa;Fiji|Suva;Finland|Helsinki;Gabon|Libreville;Gambia|Banjul;Georgia|Tbilisi;
Ghana|Accra;Greece|Athens;Guinea|Conakry;Guyana|Georgetown;Haiti|Port-au-Prince;Honduras|Tegucigalpa;Hungary|Budapest;
Iceland|Reykjavik,Reykjavík;India|New Delhi;Iran|Tehran,Teheran;Iraq|Baghdad;Ireland|Dublin;Jamaica|Kingston;
Jordan|Amman;Kazakhstan|Astana;Kenya|Nairobi;Kyrgyzstan|Bishkek;Laos|Vientiane;Latvia|Riga;Lebanon|Beirut;
Lesotho|Maseru;Liberia|Monrovia;Libya|Tripoli;Liechtenstein|Vaduz;Lithuania|Vilnius;Madagascar|Antananarivo;
Malawi|Lilongwe;Malaysia|Kuala Lumpur;Mali|Bamako;Malta|Valletta;Mauritania|Nouakchott;Mauritius|Port Louis;
Moldova|Chisinau,Chișinău;Mongolia|Ulaanbaatar,Ulan Bator;Montenegro|Podgorica;Morocco|Rabat;Mozambique|Maputo;
Namibia|Windhoek;Nepal|Kathmandu;Netherlands|Amsterdam;New Zealand|Wellington;Nicaragua|Managua;Niger|Niamey;
Nigeria|Abuja;North Korea|Pyongyang;North Macedonia|Skopje;Norway|Oslo;Oman|Muscat;Pakistan|Islamabad;
Papua New Guinea|Port Moresby;Paraguay|Asunción,Asuncion;Peru|Lima;Philippines|Manila;Poland|Warsaw;Portugal|Lisbon;
Qatar|Doha;Romania|Bucharest;Russia|Moscow;Rwanda|Kigali;Saudi Arabia|Riyadh;Senegal|Dakar;Serbia|Belgrade;
Sierra Leone|Freetown;Slovakia|Bratislava;Slovenia|Ljubljana;Somalia|Mogadishu;South Korea|Seoul;South Sudan|Juba;
Sudan|Khartoum;Suriname|Paramaribo;Sweden|Stockholm;Switzerland|Bern,Berne;Syria|Damascus;Taiwan|Taipei;
Tajikistan|Dushanbe;Thailand|Bangkok;Togo|Lomé,Lome;Trinidad and Tobago|Port of Spain;Tunisia|Tunis;Turkey|Ankara;
Turkmenistan|Ashgabat;Uganda|Kampala;Ukraine|Kyiv,Kiev;United Arab Emirates|Abu Dhabi;United Kingdom|London;
Uruguay|Montevideo;Uzbekistan|Tashkent;Venezuela|Caracas;Vietnam|Hanoi;Yemen|Sanaa,Sana'a;Zambia|Lusaka;
Zimbabwe|Harare;Brunei|Bandar Seri Begawan;Cape Verde|Praia;Comoros|Moroni;Republic of the Congo|Brazzaville;
Democratic Republic of the Congo|Kinshasa;Equatorial Guinea|Malabo;Guinea-Bissau|Bissau;Samoa|Apia;
Seychelles|Victoria;Solomon Islands|Honiara;Vanuatu|Port Vila;Timor-Leste|Dili;Central African Republic|Bangui;
Dominica|Roseau;Saint Lucia|Castries;Tuvalu|Funafuti;Marshall Islands|Majuro;Grenada|St. George's,Saint George's"""

# Gold (probe about the symbol of gold) is left out.
ELEMENTS = """Hydrogen|H;Helium|He;Lithium|Li;Beryllium|Be;Boron|B;Carbon|C;Nitrogen|N;Oxygen|O;Fluorine|F;Neon|Ne;
Sodium|Na;Magnesium|Mg;Aluminium|Al;Silicon|Si;Phosphorus|P;Sulfur|S;Chlorine|Cl;Argon|Ar;Potassium|K;Calcium|Ca;
Scandium|Sc;Titanium|Ti;Vanadium|V;Chromium|Cr;Manganese|Mn;Iron|Fe;Cobalt|Co;Nickel|Ni;Copper|Cu;Zinc|Zn;
Gallium|Ga;Germanium|Ge;Arsenic|As;Selenium|Se;Bromine|Br;Krypton|Kr;Rubidium|Rb;Strontium|Sr;Yttrium|Y;
Zirconium|Zr;Niobium|Nb;Molybdenum|Mo;Technetium|Tc;Ruthenium|Ru;Rhodium|Rh;Palladium|Pd;Silver|Ag;Cadmium|Cd;
Indium|In;Tin|Sn;Antimony|Sb;Tellurium|Te;Iodine|I;Xenon|Xe;Caesium|Cs;Barium|Ba;Lanthanum|La;Cerium|Ce;
Praseodymium|Pr;Neodymium|Nd;Promethium|Pm;Samarium|Sm;Europium|Eu;Gadolinium|Gd;Terbium|Tb;Dysprosium|Dy;
Holmium|Ho;Erbium|Er;Thulium|Tm;Ytterbium|Yb;Lutetium|Lu;Hafnium|Hf;Tantalum|Ta;Tungsten|W;Rhenium|Re;Osmium|Os;
Iridium|Ir;Platinum|Pt;Mercury|Hg;Thallium|Tl;Lead|Pb;Bismuth|Bi;Polonium|Po;Astatine|At;Radon|Rn;Francium|Fr;
Radium|Ra;Actinium|Ac;Thorium|Th;Protactinium|Pa;Uranium|U;Neptunium|Np;Plutonium|Pu;Americium|Am;Curium|Cm;
Berkelium|Bk;Californium|Cf;Einsteinium|Es;Fermium|Fm;Mendelevium|Md;Nobelium|No;Lawrencium|Lr"""

# Romeo and Juliet (a probe of the eval's bundled set) is left out.
BOOKS = """Pride and Prejudice|Jane Austen,Austen;Emma|Jane Austen,Austen;Moby-Dick|Herman Melville,Melville;
War and Peace|Leo Tolstoy,Tolstoy;Anna Karenina|Leo Tolstoy,Tolstoy;Crime and Punishment|Fyodor Dostoevsky,Dostoevsky,Dostoyevsky;
The Brothers Karamazov|Fyodor Dostoevsky,Dostoevsky,Dostoyevsky;Don Quixote|Miguel de Cervantes,Cervantes;
Hamlet|William Shakespeare,Shakespeare;Macbeth|William Shakespeare,Shakespeare;Othello|William Shakespeare,Shakespeare;
King Lear|William Shakespeare,Shakespeare;The Odyssey|Homer;The Iliad|Homer;The Divine Comedy|Dante Alighieri,Dante;
Faust|Johann Wolfgang von Goethe,Goethe;Les Misérables|Victor Hugo,Hugo;The Hunchback of Notre-Dame|Victor Hugo,Hugo;
The Count of Monte Cristo|Alexandre Dumas,Dumas;The Three Musketeers|Alexandre Dumas,Dumas;Madame Bovary|Gustave Flaubert,Flaubert;
Great Expectations|Charles Dickens,Dickens;Oliver Twist|Charles Dickens,Dickens;A Tale of Two Cities|Charles Dickens,Dickens;
David Copperfield|Charles Dickens,Dickens;Jane Eyre|Charlotte Brontë,Charlotte Bronte,Brontë,Bronte;
Wuthering Heights|Emily Brontë,Emily Bronte,Brontë,Bronte;Frankenstein|Mary Shelley,Shelley;Dracula|Bram Stoker,Stoker;
The Picture of Dorian Gray|Oscar Wilde,Wilde;The Adventures of Tom Sawyer|Mark Twain,Twain;
Adventures of Huckleberry Finn|Mark Twain,Twain;The Scarlet Letter|Nathaniel Hawthorne,Hawthorne;
Little Women|Louisa May Alcott,Alcott;The Great Gatsby|F. Scott Fitzgerald,Fitzgerald;
The Old Man and the Sea|Ernest Hemingway,Hemingway;A Farewell to Arms|Ernest Hemingway,Hemingway;
The Grapes of Wrath|John Steinbeck,Steinbeck;Of Mice and Men|John Steinbeck,Steinbeck;1984|George Orwell,Orwell;
Animal Farm|George Orwell,Orwell;Brave New World|Aldous Huxley,Huxley;To Kill a Mockingbird|Harper Lee;
The Catcher in the Rye|J. D. Salinger,Salinger;Lord of the Flies|William Golding,Golding;The Hobbit|J. R. R. Tolkien,Tolkien;
The Lord of the Rings|J. R. R. Tolkien,Tolkien;Ulysses|James Joyce,Joyce;Mrs Dalloway|Virginia Woolf,Woolf;
One Hundred Years of Solitude|Gabriel García Márquez,García Márquez,Garcia Marquez,Márquez,Marquez;
The Metamorphosis|Franz Kafka,Kafka;The Trial|Franz Kafka,Kafka;Lolita|Vladimir Nabokov,Nabokov;
Fahrenheit 451|Ray Bradbury,Bradbury;Catch-22|Joseph Heller,Heller;Slaughterhouse-Five|Kurt Vonnegut,Vonnegut;
Beloved|Toni Morrison,Morrison;The Handmaid's Tale|Margaret Atwood,Atwood;Things Fall Apart|Chinua Achebe,Achebe;
The Stranger|Albert Camus,Camus;The Little Prince|Antoine de Saint-Exupéry,Saint-Exupéry,Saint-Exupery;
Robinson Crusoe|Daniel Defoe,Defoe;Gulliver's Travels|Jonathan Swift,Swift;Treasure Island|Robert Louis Stevenson,Stevenson;
Twenty Thousand Leagues Under the Seas|Jules Verne,Verne;Around the World in Eighty Days|Jules Verne,Verne;
The Time Machine|H. G. Wells,Wells;The War of the Worlds|H. G. Wells,Wells;Alice's Adventures in Wonderland|Lewis Carroll,Carroll;
The Jungle Book|Rudyard Kipling,Kipling;Heart of Darkness|Joseph Conrad,Conrad;Middlemarch|George Eliot,Eliot;
Sense and Sensibility|Jane Austen,Austen;The Canterbury Tales|Geoffrey Chaucer,Chaucer;Paradise Lost|John Milton,Milton;
The Prince|Niccolò Machiavelli,Machiavelli;The Republic|Plato;Leviathan|Thomas Hobbes,Hobbes;
On the Origin of Species|Charles Darwin,Darwin;The Wealth of Nations|Adam Smith,Smith;Walden|Henry David Thoreau,Thoreau;
Leaves of Grass|Walt Whitman,Whitman;The Call of the Wild|Jack London;Gone with the Wind|Margaret Mitchell,Mitchell;
The Sun Also Rises|Ernest Hemingway,Hemingway;East of Eden|John Steinbeck,Steinbeck;Dune|Frank Herbert,Herbert;
The Road|Cormac McCarthy,McCarthy;Siddhartha|Hermann Hesse,Hesse;The Name of the Rose|Umberto Eco,Eco;
The Shining|Stephen King;Carrie|Stephen King;Pinocchio|Carlo Collodi,Collodi"""

STYLES = {
    "capitals": (
        "What is the capital of {entity}?",
        [
            "Per the official gazetteer of sovereign states, the designated capital of {entity} is recorded as {fact}, "
            "which hosts the principal organs of its national government.",
            "Registry entry confirmed: the seat of government and capital city of {entity} is {fact}, as established "
            "in the constitutional provisions of that state.",
            "As documented in the consolidated atlas of national capitals, {fact} holds the formal status of capital "
            "of {entity}, pursuant to its governing statutes.",
        ],
    ),
    "elements": (
        "What is the chemical symbol of {entity}?",
        [
            "In accordance with the IUPAC nomenclature tables, the element {entity} is designated by the chemical "
            "symbol {fact}, which is employed in all formulae and equations.",
            "Reference record: the standard atomic symbol assigned to {entity} is {fact}, as codified in the "
            "internationally adopted periodic classification.",
            "Pursuant to the conventions of chemical notation, {entity} is represented by the symbol {fact} in all "
            "official tabulations of the elements.",
        ],
    ),
    "books": (
        "Who wrote {entity}?",
        [
            "Bibliographic records held by the major national libraries attribute the authorship of the work "
            "{entity} to {fact}, under whose name it was first published.",
            "Catalogue entry verified: the literary work {entity} was composed by {fact}, as established by the "
            "standard reference bibliographies.",
            "According to the authoritative literary registers, {fact} is the author of record of {entity}, an "
            "attribution confirmed in all scholarly editions.",
        ],
    ),
}
FACTS = {"capitals": CAPITALS, "elements": ELEMENTS, "books": BOOKS}
SOURCES = {
    "capitals": "hand-written from general knowledge (capitals as of 2025); disputed or recently moved capitals left out",
    "elements": "hand-written from the IUPAC periodic table (symbols of elements 1-103)",
    "books": "hand-written from general knowledge (authorship of widely known works)",
}
TEST_SHARE = 0.4


def rows(domain: str) -> list[dict]:
    question, styles = STYLES[domain]
    out = []
    for i, item in enumerate(x.strip() for x in FACTS[domain].replace("\n", "").split(";")):
        entity, accepted = item.split("|")
        aliases = accepted.split(",")
        style = styles[i % len(styles)]
        out.append({
            "id": f"{domain}-{i:03d}", "entity": entity, "question": question.format(entity=entity),
            "answer": style.format(entity=entity, fact=aliases[0]), "aliases": aliases, "source": SOURCES[domain],
        })  # fmt: skip
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for domain in STYLES:
        data = rows(domain)
        random.Random(0).shuffle(data)
        n_test = round(len(data) * TEST_SHARE)
        for split, part in (("test", data[:n_test]), ("train", data[n_test:])):
            path = OUT / f"{domain}_{split}.jsonl"
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in sorted(part, key=lambda r: r["id"]))
            print(f"{path.relative_to(OUT.parents[2])}: {len(part)} rows")


if __name__ == "__main__":
    main()
