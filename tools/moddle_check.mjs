// Load each BPMN or DMN file named on the command line with the bpmn.io moddle libraries (the ones bpmn-js,
// dmn-js and Camunda Modeler use) and print one JSON array: [{file, warnings, errors}, ...].
// Exit status 1 when any file has a warning or an error, 2 on a usage error.
//
// BPMN files are read with the Camunda 7 extension descriptor and caseflow's own (tools/moddle/caseflow.json),
// so a misspelt camunda: or caseflow: attribute is reported instead of being kept silently.
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';

import { BpmnModdle } from 'bpmn-moddle';
import { DmnModdle } from 'dmn-moddle';

const load = (path) => JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8'));
const camundaBpmn = load('../node_modules/camunda-bpmn-moddle/resources/camunda.json');
const camundaDmn = load('../node_modules/camunda-dmn-moddle/resources/camunda.json');
const caseflow = load('./moddle/caseflow.json');

const DMN_13 = 'https://www.omg.org/spec/DMN/20191111/MODEL/';

// The engine also reads these caseflow: attributes as aliases of the camunda: attributes of the same local
// name (engine/definitions/parser.py, _ext). moddle cannot describe two attributes with one local name on one
// type, so they are not in caseflow.json: an "unknown attribute" warning for one of them on its type is dropped.
const CAMUNDA_ALIASES = {
  topic: ['bpmn:ServiceTask'],
  candidateGroups: ['bpmn:UserTask'],
  candidateUsers: ['bpmn:UserTask'],
  assignee: ['bpmn:UserTask'],
  dueDate: ['bpmn:UserTask'],
  formKey: ['bpmn:UserTask'],
  priority: ['bpmn:UserTask'],
  mapDecisionResult: ['bpmn:BusinessRuleTask'],
  resultVariable: ['bpmn:BusinessRuleTask'],
};

function isCamundaAlias(warning) {
  const match = /^unknown attribute <caseflow:([^>]+)>$/.exec(String(warning.message || ''));
  const types = match && CAMUNDA_ALIASES[match[1]];
  const element = warning.element;
  return Boolean(types && element && element.$instanceOf && types.some((t) => element.$instanceOf(t)));
}

function describe(warning) {
  const message = String(warning.message || warning);
  const element = warning.element && warning.element.id ? ` (element ${warning.element.id})` : '';
  return message + element;
}

async function check(file) {
  const result = { file, warnings: [], errors: [] };
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    result.errors.push(`cannot read: ${err.message}`);
    return result;
  }
  const isDmn = extname(file).toLowerCase() === '.dmn';
  try {
    if (isDmn) {
      if (!text.includes(DMN_13)) {
        result.errors.push(`not DMN 1.3 (${DMN_13}): dmn-moddle reads DMN 1.3 only`);
        return result;
      }
      const moddle = new DmnModdle({ camunda: camundaDmn });
      const { warnings } = await moddle.fromXML(text, 'dmn:Definitions');
      result.warnings = warnings.map(describe);
    } else {
      const moddle = new BpmnModdle({ camunda: camundaBpmn, caseflow });
      const { warnings } = await moddle.fromXML(text, 'bpmn:Definitions');
      result.warnings = warnings.filter((w) => !isCamundaAlias(w)).map(describe);
    }
  } catch (err) {
    result.errors.push(String(err.message || err).split('\n')[0]);
  }
  return result;
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node tools/moddle_check.mjs FILE.bpmn|FILE.dmn ...');
  process.exit(2);
}
const results = [];
for (const file of files) {
  results.push(await check(file));
}
console.log(JSON.stringify(results, null, 2));
process.exit(results.some((r) => r.warnings.length || r.errors.length) ? 1 : 0);
