"""A small taxonomy written for jobmatch, so a fresh install simulates a marketplace without external data.

One occupation per line: code | family | job zone | title | alternate titles (;) | skills with importance (;)
| primary related codes (,) | supplemental related codes (,).
"""

from __future__ import annotations

from functools import cache

from jobmatch.taxonomy.base import Occupation, Taxonomy

_TABLE = """
SW01|software & data|4|Software Engineer|software developer;backend engineer;full stack developer;application developer|python:1;software design:.9;sql:.7;git:.7;algorithms:.8;cloud computing:.5|SW02,SW03,SW05|SW04,SW06
SW02|software & data|4|Frontend Engineer|front end developer;web developer;ui engineer;react developer|javascript:1;react:.9;css:.8;html:.8;software design:.6;git:.6|SW01,SW06|SW03
SW03|software & data|4|DevOps Engineer|site reliability engineer;platform engineer;cloud engineer;infrastructure engineer|kubernetes:1;linux:.9;cloud computing:.9;python:.6;networking:.6;git:.5|SW01,SW04|SW05
SW04|software & data|3|Database Administrator|dba;database engineer;sql server administrator;database specialist|sql:1;database administration:1;linux:.6;data modeling:.7;backup and recovery:.6|SW05,SW03|SW01
SW05|software & data|4|Data Scientist|machine learning engineer;data analyst;applied scientist;quantitative analyst|python:1;statistics:1;machine learning:.9;sql:.8;data visualization:.6|SW01,SW04,FN04|SW06
SW06|software & data|4|Product Manager|technical product manager;product owner;program manager;product lead|product strategy:1;roadmapping:.9;user research:.7;agile:.8;data analysis:.6;stakeholder management:.8|SW01,SW02,SM03|SW05
HC01|healthcare|3|Registered Nurse|rn;staff nurse;icu nurse;charge nurse|patient care:1;medication administration:.9;clinical assessment:.9;electronic health records:.6;cpr:.7|HC02,HC03|HC06
HC02|healthcare|2|Medical Assistant|clinical assistant;certified medical assistant;patient care technician;healthcare assistant|patient care:.9;phlebotomy:.8;vital signs:.9;electronic health records:.7;scheduling:.5|HC01,HC04|HC05
HC03|healthcare|5|Nurse Practitioner|family nurse practitioner;np;advanced practice nurse;primary care provider|clinical assessment:1;diagnosis:1;prescribing:.9;patient care:.8;electronic health records:.6|HC01,HC05|HC06
HC04|healthcare|2|Pharmacy Technician|pharmacy tech;certified pharmacy technician;pharmacy assistant;dispensing technician|medication dispensing:1;inventory control:.7;customer service:.6;pharmacology:.7;data entry:.5|HC02,HC05|HC06
HC05|healthcare|5|Pharmacist|clinical pharmacist;retail pharmacist;staff pharmacist;pharmacy manager|pharmacology:1;medication dispensing:.8;patient counseling:.9;prescribing:.6;regulatory compliance:.6|HC04,HC03|HC01
HC06|healthcare|4|Physical Therapist|physiotherapist;pt;rehabilitation therapist;sports physical therapist|rehabilitation:1;anatomy:.9;patient care:.8;exercise prescription:.9;clinical assessment:.7|HC01,HC03|HC02
FN01|finance|4|Accountant|staff accountant;cpa;general ledger accountant;senior accountant|accounting:1;gaap:.9;excel:.8;reconciliation:.8;tax preparation:.5;erp systems:.6|FN02,FN03|FN05
FN02|finance|4|Auditor|internal auditor;external auditor;audit associate;it auditor|auditing:1;accounting:.8;risk assessment:.8;regulatory compliance:.8;excel:.6|FN01,FN06|FN03
FN03|finance|4|Financial Analyst|fp&a analyst;budget analyst;corporate finance analyst;finance associate|financial modeling:1;excel:.9;forecasting:.9;accounting:.6;data analysis:.7|FN01,FN04,FN05|SW05
FN04|finance|5|Investment Analyst|equity research analyst;hedge fund analyst;portfolio analyst;investment associate|financial modeling:1;valuation:1;equity research:.9;excel:.7;statistics:.6|FN03,FN05|SW05
FN05|finance|4|Loan Officer|mortgage loan officer;credit analyst;lending officer;underwriter|underwriting:1;credit analysis:.9;customer service:.7;regulatory compliance:.7;sales:.5|FN03,FN06|SM01
FN06|finance|2|Bookkeeper|accounts payable clerk;accounting clerk;payroll clerk;billing specialist|bookkeeping:1;accounts payable:.9;excel:.7;data entry:.8;reconciliation:.7|FN01,FN02|FN05
SM01|sales & marketing|3|Sales Representative|account executive;sales associate;inside sales representative;business development representative|sales:1;negotiation:.9;crm software:.8;prospecting:.8;customer service:.6|SM02,SM05|SM06
SM02|sales & marketing|4|Account Manager|key account manager;client success manager;customer success manager;relationship manager|relationship management:1;sales:.7;negotiation:.7;crm software:.7;stakeholder management:.6|SM01,SM03|SM05
SM03|sales & marketing|4|Marketing Manager|brand manager;growth marketing manager;product marketing manager;marketing lead|marketing strategy:1;brand management:.8;digital marketing:.8;data analysis:.6;budgeting:.5|SM04,SM02,SW06|SM06
SM04|sales & marketing|3|Digital Marketing Specialist|seo specialist;social media manager;content marketer;performance marketer|digital marketing:1;seo:.9;social media:.9;content writing:.7;google analytics:.8|SM03,SM06|SM01
SM05|sales & marketing|5|Sales Manager|regional sales manager;sales director;head of sales;area sales manager|sales:.9;team leadership:1;forecasting:.7;negotiation:.8;crm software:.6|SM01,SM02|SM03
SM06|sales & marketing|3|Public Relations Specialist|communications specialist;pr manager;media relations specialist;corporate communications|media relations:1;content writing:.9;social media:.7;crisis communication:.7;event planning:.5|SM04,SM03|SM02
TR01|skilled trades|2|Electrician|journeyman electrician;industrial electrician;electrical technician;maintenance electrician|electrical wiring:1;blueprint reading:.8;troubleshooting:.9;safety procedures:.8;plc programming:.5|TR02,TR05|TR03
TR02|skilled trades|2|HVAC Technician|hvac installer;refrigeration technician;hvac service technician;heating technician|hvac systems:1;troubleshooting:.9;refrigeration:.8;electrical wiring:.6;customer service:.5|TR01,TR03|TR05
TR03|skilled trades|2|Plumber|pipefitter;journeyman plumber;service plumber;plumbing technician|plumbing:1;pipefitting:.9;blueprint reading:.7;troubleshooting:.7;safety procedures:.7|TR02,TR04|TR01
TR04|skilled trades|2|Carpenter|finish carpenter;framer;cabinet maker;construction carpenter|carpentry:1;blueprint reading:.8;power tools:.9;framing:.8;safety procedures:.6|TR03,TR06|TR01
TR05|skilled trades|3|Maintenance Technician|facilities technician;industrial maintenance mechanic;building engineer;millwright|troubleshooting:1;preventive maintenance:.9;electrical wiring:.6;hydraulics:.7;safety procedures:.7|TR01,TR02,TR06|TR04
TR06|skilled trades|2|Welder|fabricator;mig welder;tig welder;structural welder|welding:1;metal fabrication:.9;blueprint reading:.7;safety procedures:.7;power tools:.6|TR04,TR05|TR03
ED01|education|4|Elementary School Teacher|primary teacher;classroom teacher;kindergarten teacher;grade school teacher|lesson planning:1;classroom management:1;child development:.8;curriculum design:.6;communication:.6|ED02,ED04|ED05
ED02|education|4|High School Teacher|secondary teacher;math teacher;science teacher;english teacher|lesson planning:1;classroom management:.9;subject expertise:.9;curriculum design:.6;assessment:.7|ED01,ED03|ED06
ED03|education|5|Professor|assistant professor;lecturer;associate professor;adjunct faculty|research:1;subject expertise:1;teaching:.8;grant writing:.7;academic writing:.8|ED02,ED06|SW05
ED04|education|4|Special Education Teacher|special ed teacher;learning support teacher;resource teacher;inclusion teacher|individualized education plans:1;classroom management:.8;child development:.9;behavior management:.9;lesson planning:.6|ED01,ED05|ED02
ED05|education|5|School Counselor|guidance counselor;academic advisor;college counselor;student counselor|counseling:1;student advising:.9;communication:.8;crisis intervention:.6;career planning:.7|ED04,ED01|HC06
ED06|education|3|Instructional Designer|learning designer;e-learning developer;curriculum developer;training specialist|curriculum design:1;e-learning tools:.9;content writing:.7;assessment:.6;project management:.5|ED03,ED02|SM04
HO01|hospitality & retail|2|Retail Sales Associate|store associate;cashier;sales floor associate;retail clerk|customer service:1;cash handling:.8;merchandising:.7;sales:.6;inventory control:.5|HO02,HO04|SM01
HO02|hospitality & retail|3|Store Manager|retail store manager;assistant store manager;shop manager;branch manager|team leadership:1;retail operations:.9;inventory control:.7;customer service:.7;budgeting:.6|HO01,HO05|SM05
HO03|hospitality & retail|1|Line Cook|prep cook;cook;kitchen staff;short order cook|food preparation:1;food safety:.9;knife skills:.8;teamwork:.6;time management:.5|HO05,HO06|HO04
HO04|hospitality & retail|2|Front Desk Agent|hotel receptionist;guest services agent;front office agent;concierge|customer service:1;reservation systems:.9;cash handling:.6;communication:.8;scheduling:.5|HO01,HO05|HO06
HO05|hospitality & retail|3|Restaurant Manager|general manager restaurant;food and beverage manager;kitchen manager;hospitality manager|team leadership:.9;food safety:.8;budgeting:.7;customer service:.8;scheduling:.7|HO02,HO03,HO04|HO06
HO06|hospitality & retail|1|Server|waiter;waitress;banquet server;food server|customer service:1;food service:.9;cash handling:.7;teamwork:.7;communication:.6|HO03,HO04|HO01
"""


def _parse(table: str) -> list[Occupation]:
    occupations = []
    for line in table.strip().splitlines():
        code, family, zone, title, alts, skills, primary, supplemental = line.split("|")
        weighted = tuple((s, float(w)) for s, w in (item.rsplit(":", 1) for item in skills.split(";")))
        related = tuple((c, 1) for c in primary.split(",") if c) + tuple((c, 2) for c in supplemental.split(",") if c)
        occupations.append(
            Occupation(code, title, family, int(zone), tuple(alts.split(";")),
                       tuple(sorted(weighted, key=lambda sw: -sw[1])), related)
        )
    return occupations


@cache
def builtin_taxonomy() -> Taxonomy:
    return Taxonomy("builtin", _parse(_TABLE))
