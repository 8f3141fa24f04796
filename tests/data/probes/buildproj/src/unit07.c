/* One of the tiny compile units of the build-probe test project. */
int unit07(int x);

int unit07(int x)
{
	int acc = 7;
	for (int k = 0; k < x; k++)
		acc = acc * 31 + k;
	return acc;
}
